# The python3 helper of offlineimap's oi-pyeval crate: JSON lines on stdin/stdout.
# It evaluates exactly what OfflineIMAP 8's LocalEval evaluates: the pythonfile is loaded
# once as a module, and expressions see its names plus, for some options, `re`.
import sys

# `python3 -c` puts the current directory first on sys.path; OfflineIMAP is run as a
# script and never imports from the user's working directory.
if sys.path and sys.path[0] in ('', '.'):
    del sys.path[0]

import importlib.machinery
import importlib.util
import json
import os
import re

# The protocol owns private copies of stdin/stdout; user code that prints, or runs a
# subprocess that prints, writes to stderr instead of corrupting the protocol.
_out = os.fdopen(os.dup(1), 'w', encoding='utf-8', newline='\n')
_in = os.fdopen(os.dup(0), 'r', encoding='utf-8', newline='\n')
os.dup2(2, 1)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)

namespace = {}
funcs = {}


def load(path):
    # Same steps as offlineimap/localeval.py, so the module sees the same globals.
    importlib.machinery.SOURCE_SUFFIXES.append('')
    spec = importlib.util.spec_from_file_location('<none>', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in dir(module):
        namespace[attr] = getattr(module, attr)


def names(with_re):
    d = {}
    d.update(namespace)
    if with_re:
        d['re'] = re
    return d


def enc(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if -2 ** 63 <= v < 2 ** 63:
            return int(v)
    elif isinstance(v, str):
        return str(v)
    elif type(v) is list:
        return {'t': 'list', 'v': [enc(x) for x in v]}
    elif type(v) is tuple:
        return {'t': 'tuple', 'v': [enc(x) for x in v]}
    elif type(v) is dict:
        return {'t': 'dict', 'v': [[enc(k), enc(x)] for k, x in v.items()]}
    return {'t': 'other', 'type': type(v).__name__, 'truthy': bool(v)}


def cmp2key(mycmp):
    # offlineimap/repository/IMAP.py getfolders(): sort() only ever calls __lt__.
    class K:
        def __init__(self, obj, *args):
            self.obj = obj

        def __lt__(self, other):
            return mycmp(self.obj, other.obj) < 0
    return K


def handle(req):
    op = req['op']
    if op == 'load':
        load(req['path'])
        return {'ok': True}
    if op == 'eval':
        return {'value': enc(eval(req['source'], names(req['re'])))}
    if op == 'define':
        funcs[req['id']] = eval(req['source'], names(req['re']))
        return {'ok': True}
    if op == 'apply':
        f = funcs[req['id']]
        return {'values': [enc(f(n)) for n in req['names']]}
    if op == 'sort':
        f = funcs[req['id']]
        ns = req['names']
        order = list(range(len(ns)))
        order.sort(key=cmp2key(lambda i, j: f(ns[i], ns[j])))
        return {'order': order}
    if op == 'keyring_get':
        # OfflineIMAP 8's getpassword(), its last source: the keyring module and
        # whatever backend the user configured for it.
        import keyring
        return {'value': keyring.get_password(req['service'], req['user'])}
    if op == 'keyring_set':
        import keyring
        keyring.set_password(req['service'], req['user'], req['password'])
        return {'ok': True}
    raise ValueError('unknown op %r' % op)


for line in _in:
    try:
        resp = handle(json.loads(line))
    except BaseException as e:  # noqa: B902 - report even SystemExit from user code
        resp = {'error': {'type': type(e).__name__, 'message': str(e)}}
    _out.write(json.dumps(resp) + '\n')
    _out.flush()
