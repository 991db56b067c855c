#!/usr/bin/env python3
"""Checks that docs/config.md documents every key `arcface-ps --help` lists,
with the same default, and no key that does not exist. With --write, rewrites
the table between the '| key |' header and the next blank line instead."""
import re
import subprocess
import sys


def keys_from_help(binary):
    text = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
    keys = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  (\w+) \((\w+), default (.*?)\)(?:: (.*))?$", line)
        if m:
            desc = lines[i + 1].strip() if i + 1 < len(lines) else ""
            keys.append((m.group(1), m.group(2), m.group(3), m.group(4) or "", desc))
    return keys


def row(key, typ, default, rng, desc):
    esc = lambda s: s.replace("|", "\\|")
    return f"| `{key}` | {typ} | `{default}` | {esc(rng)} | {esc(desc)} |"


def main():
    write = "--write" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--write"]
    binary, doc = args
    keys = keys_from_help(binary)
    if len(keys) < 10:
        sys.exit(f"could not parse the key list of {binary} --help")
    text = open(doc).read()
    if write:
        lines = text.split("\n")
        start = next(i for i, l in enumerate(lines) if l.startswith("| key |"))
        end = start + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines[start + 2:end] = [row(*k) for k in keys]
        open(doc, "w").write("\n".join(lines))
        print(f"{doc}: {len(keys)} keys written")
        return
    documented = dict(re.findall(r"^\| `(\w+)` \| \w+ \| `(.*?)` \|", text, re.M))
    problems = []
    for key, _, default, _, _ in keys:
        if key not in documented:
            problems.append(f"key '{key}' is not documented")
        elif documented[key] != default:
            problems.append(f"key '{key}': documented default '{documented[key]}', the program says '{default}'")
    for key in documented:
        if key not in {k[0] for k in keys}:
            problems.append(f"documented key '{key}' does not exist")
    for p in problems:
        print(f"{doc}: {p}")
    if problems:
        print(f"regenerate with: python3 {sys.argv[0]} --write {binary} {doc}")
        sys.exit(1)
    print(f"{doc}: all {len(keys)} keys documented")


if __name__ == "__main__":
    main()
