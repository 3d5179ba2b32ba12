#!/usr/bin/env python3
"""Checks that the code map of ARCHITECTURE.md names every Rust file, and only files that exist.

The files: every `.rs` file git tracks under runtime/, plugins/, sdk/ and tests/ that is on disk
(a tracked file deleted in the working tree is left out; templates, test guests, benches and
build scripts are in; no file is exempt).

The sections: the `###` headings under `## Code map`. A heading's first backticked path is the
folder its section covers (`runtime/core`, `runtime`); a heading that begins with "Outside"
covers the rest of the repository; a heading with neither covers nothing. A file belongs to
the section with the longest folder that contains it: runtime/core/src/ids.rs to the
`runtime/core` section, runtime/benches/execute.rs to `runtime`, plugins/rest/src/plan.rs to
"Outside `runtime/`".

The rule: a file is named when a backticked text of ARCHITECTURE.md (code blocks left out) is
  - its whole path (`runtime/engine/src/urls.rs`), anywhere in the document; or
  - a trailing part of its path, whole components only (`api/users.rs`, `users.rs`,
    `benches/execute.rs`), inside its own section, provided no other file of that section ends
    with the same part. So `users.rs` in the `runtime` section names runtime/src/api/users.rs,
    while `mod.rs` there names nothing (api/, auth/ and authoring/ each have one): write
    `api/mod.rs`; or
  - a trailing part as above inside a list item that opens with a backticked folder, like
    "- `api/`: ..." or "- `tests/api/`: ...", provided no other file of the section under
    that folder ends with it: there `mod.rs` names api/mod.rs and `main.rs` tests/api/main.rs.
A section's lib.rs, main.rs and mod.rs files are named like any other.
And the other way: every backticked text that is a path ending in `.rs` must be a trailing
part of the path of a `.rs` file on disk that git tracks or does not ignore (a file being
added counts), so a renamed or deleted file cannot stay in the map.

It prints each missing file on its own line with the shortest name that would do, each stale
name, and a summary; exits 1 when there is either.

Usage: scripts/architecture-map.py [-q]   (-q prints problems and the summary only)
"""
import os
import re
import subprocess
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
DOC = os.path.join(REPO, 'ARCHITECTURE.md')
CHECKED = ('runtime/', 'plugins/', 'sdk/', 'tests/')


def rs_files(*options):
    """`.rs` files `git ls-files` lists with these options, those on disk only."""
    out = subprocess.run(['git', 'ls-files', *options, '*.rs'], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    paths = (path for path in out.split('\n') if path)
    return sorted(path for path in paths if os.path.isfile(os.path.join(REPO, path)))


def names_in(text):
    """Backticked texts, code blocks left out."""
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    return [' '.join(name.split()) for name in re.findall(r'`([^`]+)`', text)]


def sections_of(doc):
    """(folder, text) of each `###` section of the code map; '' is the repository root."""
    parts = re.split(r'^## Code map\s*$', doc, flags=re.M)
    if len(parts) != 2:
        sys.exit('ARCHITECTURE.md: no single "## Code map" heading')
    code_map = re.split(r'^## ', parts[1], flags=re.M)[0]
    sections = []
    for part in re.split(r'^(?=### )', code_map, flags=re.M)[1:]:
        heading = part.split('\n', 1)[0]
        paths = names_in(heading)
        if heading[4:].startswith('Outside'):
            sections.append(('', part))
        elif paths:
            sections.append((paths[0].rstrip('/'), part))
    return sections


def section_of(path, sections):
    inside = [folder for folder, _ in sections if folder == '' or path.startswith(folder + '/')]
    return max(inside, key=len) if inside else None


def suffixes(path):
    """`runtime/src/api/users.rs`, `src/api/users.rs`, `api/users.rs`, `users.rs`."""
    parts = path.split('/')
    return ['/'.join(parts[i:]) for i in range(len(parts))]


def folder_items(text):
    """(folder, text) of each list item that opens with a backticked folder (`api/`)."""
    for item in re.split(r'^(?=- )', text, flags=re.M):
        opening = re.match(r'- `([^`]+/)`', item)
        if opening:
            yield opening.group(1), item


def under(path, folder):
    return ('/' + folder) in ('/' + path)


def unique_names(files):
    """Each trailing part that only one of these files has -> that file."""
    owners = {}
    for path in files:
        for name in suffixes(path):
            owners.setdefault(name, []).append(path)
    return {name: paths[0] for name, paths in owners.items() if len(paths) == 1}


def missing_files(files, doc, sections):
    """(file, hint) of every file the rule finds unnamed."""
    everywhere = set(names_in(doc))
    named = {path for path in files if path in everywhere}
    by_section = {}
    for path in files:
        by_section.setdefault(section_of(path, sections), []).append(path)
    hints = {}
    for folder, text in sections:
        unique = unique_names(by_section.get(folder, []))
        named |= {unique[name] for name in names_in(text) if name in unique}
        for inner, item in folder_items(text):
            inside = unique_names([p for p in by_section.get(folder, []) if under(p, inner)])
            named |= {inside[name] for name in names_in(item) if name in inside}
        for name, path in unique.items():
            if len(name) < len(hints.get(path, path)):
                hints[path] = name
    out = []
    for path in files:
        if path in named:
            continue
        folder, short = section_of(path, sections), hints.get(path, path)
        if short == path:
            hint = f'name `{path}`'
        else:
            where = f'the `{folder}` section' if folder else 'the "Outside" section'
            hint = f'name `{short}` in {where}, or `{path}` anywhere'
        out.append((path, hint))
    return out


def stale_names(doc, every_rs):
    """Backticked `.rs` paths that are no trailing part of any of these files."""
    known = {name for path in every_rs for name in suffixes(path)}
    return sorted({name for name in names_in(doc)
                   if re.fullmatch(r'[\w./-]+\.rs', name) and name not in known})


def main():
    quiet = '-q' in sys.argv[1:]
    doc = open(DOC, encoding='utf-8').read()
    files = [path for path in rs_files() if path.startswith(CHECKED)]
    sections = sections_of(doc)
    missing = missing_files(files, doc, sections)
    stale = stale_names(doc, rs_files('--cached', '--others', '--exclude-standard'))
    if not quiet:
        for folder, _ in sections:
            count = sum(1 for path in files if section_of(path, sections) == folder)
            print(f'section `{folder or "Outside"}`: {count} files')
    for path, hint in missing:
        print(f'{path}: not in ARCHITECTURE.md\'s code map; {hint}')
    for name in stale:
        print(f'`{name}` in ARCHITECTURE.md: no .rs file has this path; correct or drop it')
    if missing or stale:
        print(f'architecture map: {len(missing)} of {len(files)} files not named, '
              f'{len(stale)} stale names')
        return 1
    print(f'architecture map: all {len(files)} files named, no stale names')
    return 0


if __name__ == '__main__':
    sys.exit(main())
