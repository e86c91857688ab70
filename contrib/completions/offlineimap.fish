complete -c offlineimap -s c -d 'Configuration file (default: $XDG_CONFIG_HOME/offlineimap/config, then ~/.offlineimaprc)' -r -F
complete -c offlineimap -s a -d 'Sync only these accounts (comma separated), overriding [general] accounts' -r
complete -c offlineimap -s f -d 'Sync only these folders (comma separated remote names)' -r
complete -c offlineimap -s k -d 'Override a configuration option: [section:]option=value (repeatable)' -r
complete -c offlineimap -s u -d 'User interface: ttyui (the default), basic, quiet, syslog, machineui or blinkenlights; a comma-separated list tries each in turn (one not usable here falls to the next, basic at the end)' -r
complete -c offlineimap -s l -d 'Also write the log to this file' -r -F
complete -c offlineimap -s d -d 'Debug output for these types: imap, maildir, thread, ALL (comma separated)' -r
complete -c offlineimap -s P -d 'Profile mode: write a timing profile of every folder sync (its phases and how long each took) into DIR, one `ACCOUNT.FOLDER.prof` file per folder. Implies -1' -r -F
complete -c offlineimap -l delete-folder -d 'Delete this folder on the remote repository (one account only, the server\'s own folder name and separator), then exit' -r
complete -c offlineimap -l version -d 'Print the version and exit'
complete -c offlineimap -s V -d 'Print the version with library details and exit'
complete -c offlineimap -s o -d 'Run only once, ignoring autorefresh'
complete -c offlineimap -s s -d 'Also log to the system log (syslog / the journal)'
complete -c offlineimap -s 1 -d 'Single-threaded: one account and one connection at a time'
complete -c offlineimap -s q -d 'Quick sync: skip folders whose message counts and local flags are unchanged (server-side flag changes wait for the next full sync)'
complete -c offlineimap -l dry-run -d 'Plan and print what would be done; change nothing anywhere'
complete -c offlineimap -l info -d 'Print what the configuration says about each account and its repositories (connecting to list their folders), then exit'
complete -c offlineimap -l migrate-fmd5-using-nametrans -d 'Rename local Maildir files whose FMD5 was computed from the folder\'s untranslated name (before OfflineIMAP 6.3.5) to the FMD5 of its visible name, then exit'
complete -c offlineimap -l mbnames-prune -d 'Remove the mbnames intermediate files of accounts no longer in `[general] accounts`, rewrite the mailbox list, then exit (honours --dry-run)'
complete -c offlineimap -l ignore-keyring -d 'Never read passwords from the Python keyring (sets `[general] ignore-keyring`)'
complete -c offlineimap -l update-keyring -d 'Store the password used for each IMAP login in the Python keyring (sets `[general] update-keyring`)'
complete -c offlineimap -l distinct-exit-codes -d 'Exit status 3 when the run had nothing to do (0 when it synced changes, 1 on errors), so cron and systemd can tell the three apart. Without it the exit status is OfflineIMAP\'s: 0 or 1'
complete -c offlineimap -s h -l help -d 'Print help (see more with \'--help\')'
