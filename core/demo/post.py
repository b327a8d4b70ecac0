"""A demo agent's poster on the host (no busybox wget there): ``python post.py URL BODY`` POSTs BODY as
JSON and prints the reply's body; nothing printed and exit 1 when there is no reply. Standalone
(standard library only), so each call starts fast."""

import sys
import urllib.error
import urllib.request


def main(url: str, body: str) -> int:
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            sys.stdout.write(reply.read(1 << 20).decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:  # a refusal's body is the reply
        sys.stdout.write(error.read(1 << 16).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]) if len(sys.argv) == 3 else 2)
