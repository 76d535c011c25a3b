#!/usr/bin/env python3
"""A fake macOS `security` tool: generic passwords kept in a JSON file, every call recorded.

It speaks the subset claude-wrap uses, the way the real tool does:
  find-generic-password [-a ACCOUNT] [-s SERVICE] [-w]   exit 44 when no item matches; without
      -a the first item of the service matches, whatever its account (the trap the real tool sets)
  add-generic-password [-U] -a ACCOUNT -s SERVICE (-w PASSWORD | -X HEX)   exit 45 on a
      duplicate without -U
  delete-generic-password -a ACCOUNT -s SERVICE
  -i   read such commands from stdin, one per line, quoted as a shell would; like the real
       tool, a line past 4095 characters is cut, and each piece runs (and fails) on its own
With -w, data that is not printable ASCII is printed as hex, as the real tool does.

Environment:
  FAKE_SECURITY_STORE          the JSON file of items (required)
  FAKE_SECURITY_RECORD         append one JSON line per call: argv and stdin
  FAKE_SECURITY_IGNORE_WRITES  accept writes (exit 0) but store nothing: a write that did not land
"""

from __future__ import annotations

import json
import os
import shlex
import sys

NOT_FOUND = 44
DUPLICATE = 45


def load() -> list[dict[str, str]]:
    try:
        with open(os.environ["FAKE_SECURITY_STORE"], encoding="utf-8") as f:
            return list(json.load(f))
    except FileNotFoundError:
        return []


def save(items: list[dict[str, str]]) -> None:
    path = os.environ["FAKE_SECURITY_STORE"]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(items, f)
    os.replace(path + ".tmp", path)


def options(args: list[str]) -> tuple[dict[str, str], set[str]]:
    values: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-a", "-s", "-X", "-p") or (arg == "-w" and i + 1 < len(args)):
            if arg == "-w" and args[0] == "find-generic-password":
                flags.add(arg)
            else:
                values[arg] = args[i + 1]
                i += 1
        else:
            flags.add(arg)
        i += 1
    return values, flags


def command(args: list[str]) -> int:
    verb = args[0] if args else ""
    values, flags = options(args)
    items = load()

    def matches(item: dict[str, str]) -> bool:
        if "-s" in values and item["service"] != values["-s"]:
            return False
        return "-a" not in values or item["account"] == values["-a"]

    if verb == "find-generic-password":
        found = [item for item in items if matches(item)]
        if not found:
            sys.stderr.write(
                "security: SecKeychainSearchCopyNext: The specified item could not be found "
                "in the keychain.\n"
            )
            return NOT_FOUND
        data = bytes.fromhex(found[0]["hex"])
        if "-w" in flags:
            printable = all(32 <= b < 127 for b in data)
            sys.stdout.write((data.decode("ascii") if printable else data.hex()) + "\n")
        else:
            sys.stdout.write(f'keychain: "fake"\n    "svce"<blob>="{found[0]["service"]}"\n')
        return 0
    if verb == "add-generic-password":
        hexed = values.get("-X")
        if hexed is not None and len(hexed) % 2:
            hexed = hexed[:-1]  # cut mid-byte: the real tool stores what it got, corrupted
        data = bytes.fromhex(hexed) if hexed is not None else values.get("-w", "").encode()
        rest = [item for item in items if not matches(item)]
        if len(rest) != len(items) and "-U" not in flags:
            sys.stderr.write("security: SecKeychainItemCreateFromContent: already exists.\n")
            return DUPLICATE
        if os.environ.get("FAKE_SECURITY_IGNORE_WRITES"):
            return 0
        rest.append({"service": values["-s"], "account": values["-a"], "hex": data.hex()})
        save(rest)
        return 0
    if verb == "delete-generic-password":
        rest = [item for item in items if not matches(item)]
        if len(rest) == len(items):
            return NOT_FOUND
        save(rest)
        return 0
    sys.stderr.write(f'security: unknown command "{verb}"\n')
    return 2


def main() -> int:
    argv = sys.argv[1:]
    stdin = sys.stdin.read() if argv[:1] == ["-i"] else ""
    record = os.environ.get("FAKE_SECURITY_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
    if argv[:1] != ["-i"]:
        return command(argv)
    # Interactive mode reports a failed command on stderr and still exits 0 (the real tool may
    # too): claude-wrap must read its write back to know it landed.
    status = 0
    for line in read_lines(stdin):
        if not line.strip():
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            words = shlex.split(line + '"')  # a line cut inside its quoted hex
        command(words)
        if words[0] not in KNOWN:
            status = 1  # the real tool's exit status after an unknown command
    return status


LINE_BUFFER = 4096  # the real tool's fgets buffer: 4095 characters and the NUL
KNOWN = ("find-generic-password", "add-generic-password", "delete-generic-password")


def read_lines(stdin: str) -> list[str]:
    """Lines as the real tool's fixed buffer cuts them: a longer line comes out in pieces, each
    parsed as a command of its own (and echoed back in the error, as the real tool does)."""
    out = []
    for line in stdin.splitlines(keepends=True):
        rest = line
        while len(rest) > LINE_BUFFER - 1:
            out.append(rest[: LINE_BUFFER - 1])
            rest = rest[LINE_BUFFER - 1 :]
        out.append(rest)
    return [x.rstrip("\n") for x in out]


if __name__ == "__main__":
    sys.exit(main())
