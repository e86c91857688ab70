//! Which folders an IMAP repository lists: OfflineIMAP's `reference` and `subscribedonly`.

use crate::session::{Command, Part};

/// How the folders of a repository are listed and created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderListing {
    /// `reference`: the LIST reference (UW-IMAP style prefix); new folders are created
    /// under it (`<reference><sep><name>`), as OfflineIMAP does. The names listed are the
    /// server's full names.
    pub reference: Option<String>,
    /// `subscribedonly`: list with LSUB (subscribed folders only) instead of LIST.
    pub subscribed_only: bool,
}

impl FolderListing {
    /// The reference as configured; OfflineIMAP's default `""` (or nothing) is none.
    pub fn from_config(reference: Option<&str>, subscribed_only: bool) -> FolderListing {
        let reference = reference
            .map(|r| {
                r.strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or(r)
            })
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        FolderListing {
            reference,
            subscribed_only,
        }
    }

    /// `LIST <reference> "*"` (or LSUB). With `status`, and for LIST only, each mailbox's
    /// state comes in the same answer (LIST-STATUS, RFC 5819): what a sync needs to tell
    /// an unchanged folder without selecting it.
    pub(crate) fn command(&self, status: bool) -> Command {
        let verb = if self.subscribed_only { "LSUB" } else { "LIST" };
        let mut parts = vec![
            Part::Raw(format!("{verb} ").into_bytes()),
            Part::Str {
                bytes: self.reference.clone().unwrap_or_default().into_bytes(),
                secret: false,
            },
            Part::Raw(b" \"*\"".to_vec()),
        ];
        if status && !self.subscribed_only {
            parts.push(Part::Raw(
                b" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))".to_vec(),
            ));
        }
        Command {
            name: verb.into(),
            parts,
        }
    }

    /// The name a new folder is created with (OfflineIMAP's `makefolder`).
    pub(crate) fn create_name(&self, name: &str, sep: char) -> String {
        match &self.reference {
            Some(r) => format!("{r}{sep}{name}"),
            None => name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_is_dequoted_and_prefixes_new_folders() {
        let none = FolderListing::from_config(Some("\"\""), false);
        assert_eq!(none.reference, None);
        assert_eq!(none.create_name("a/b", '/'), "a/b");
        let mail = FolderListing::from_config(Some("Mail"), true);
        assert_eq!(mail.create_name("x", '/'), "Mail/x");
        // LSUB takes no RETURN options: subscribed folders are listed without their state.
        let lsub = mail.command(true);
        assert_eq!(lsub.name, "LSUB");
        assert_eq!(lsub.parts.len(), 3);
        let with_status = none.command(true);
        assert_eq!(with_status.name, "LIST");
        assert!(matches!(
            with_status.parts.last(),
            Some(Part::Raw(r)) if r.starts_with(b" RETURN (STATUS (")
        ));
        assert_eq!(none.command(false).parts.len(), 3);
        assert_eq!(
            FolderListing::from_config(Some("\"Mail\""), false)
                .reference
                .as_deref(),
            Some("Mail")
        );
    }
}
