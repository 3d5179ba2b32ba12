#!/usr/bin/env python3
"""Checks the rule between the server and the engine: the server (runtime/src) writes no
execution itself. Starting, cancelling, retrying, replaying, resuming, claiming, recording and
ending executions go through the engine (`dibop_engine::executions` and the workers), so each
rule about them (status checks, parameter binding, admission, leases) lives in one place.

It fails (exit 1) when a file under runtime/src calls one of the store's execution-writing
functions, listed in WRITES below, naming each call; and when a name in WRITES is no longer a
function of the store (the list would then check nothing). Reading executions (lists, one
execution, its steps) stays open to the server. Comment lines are left out.

Usage: scripts/layer-rules.py [--root DIR] [-q]   (-q prints problems only)
"""
import os
import re
import sys

# The store's functions that create or change an execution, its steps or its lease.
WRITES = [
    'enqueue_execution', 'start_execution', 'claim_execution', 'claim_execution_by_id',
    'release_all', 'renew_leases', 'release_execution', 'record_step', 'finish_execution',
    'cancel_children', 'park_in_body', 'keep_body_steps', 'cancel_execution',
    'retry_execution', 'resume_execution', 'replay_execution',
]


def rust_files(folder):
    for base, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith('.rs'):
                yield os.path.join(base, name)


def code_lines(path):
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.lstrip().startswith('//'):
                yield number, line


def store_functions(root):
    names = set()
    for path in rust_files(os.path.join(root, 'runtime', 'store', 'src')):
        for _, line in code_lines(path):
            names.update(re.findall(r'\bpub(?:\([a-z]+\))? (?:async )?fn ([a-z_0-9]+)', line))
    return names


def calls(root):
    server = os.path.join(root, 'runtime', 'src')
    pattern = re.compile(r'\.(' + '|'.join(WRITES) + r')\s*\(')
    for path in rust_files(server):
        for number, line in code_lines(path):
            for name in pattern.findall(line):
                yield os.path.relpath(path, root), number, name


def main(argv):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    if '--root' in argv:
        root = argv[argv.index('--root') + 1]
    quiet = '-q' in argv
    problems = []
    known = store_functions(root)
    for name in WRITES:
        if name not in known:
            problems.append(f'scripts/layer-rules.py: {name} is no longer a store function; update WRITES')
    for path, number, name in calls(root):
        problems.append(f'{path}:{number}: calls the store\'s {name}; go through dibop_engine::executions')
    for problem in problems:
        print(problem)
    if not quiet and not problems:
        print(f'runtime/src calls none of the store\'s {len(WRITES)} execution-writing functions')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
