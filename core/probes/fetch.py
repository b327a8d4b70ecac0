# The doctor's handshake with python3, run as: python3 -c "$(fetch.py)" TIMEOUT MODE BODY ACCEPT
# with the URL as the first line of standard input (never in argv: the engine records that).
# MODE is "sse" (wait for the endpoint event) or "post" (an initialize, wait for its result).
# Prints one line: QMSPROBE outcome=ok|fail|timeout|no-endpoint|bad-reply status=N ms=N err=text
import base64, http.client, socket, sys, time, urllib.parse


def main():
    url = sys.stdin.readline().strip()
    timeout, mode, body, accept = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    p = urllib.parse.urlsplit(url)
    path = (p.path or "/") + ("?" + p.query if p.query else "")
    t0 = time.monotonic()
    def out(outcome, status="", err=""):
        print("QMSPROBE outcome=%s status=%s ms=%d err=%s" % (outcome, status, (time.monotonic() - t0) * 1000, " ".join(str(err).split())))
        sys.exit(0 if outcome == "ok" else 1)
    headers = {}
    if p.username is not None:
        user = urllib.parse.unquote(p.username) + ":" + urllib.parse.unquote(p.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
    try:
        c = cls(p.hostname, p.port or (443 if p.scheme == "https" else 80), timeout=timeout)
        if mode == "sse":
            c.request("GET", path, headers={**headers, "Accept": "text/event-stream"})
        else:
            c.request("POST", path, body=body.encode(), headers={**headers, "Content-Type": "application/json", "Accept": accept})
        r = c.getresponse()
        if r.status != 200:
            out("fail", r.status, "HTTP %d %s" % (r.status, r.reason))
        if mode == "sse":
            event = ""
            while time.monotonic() - t0 < timeout:
                line = r.readline().decode("utf-8", "replace").strip()
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "endpoint":
                    out("ok", 200)
                elif not line and r.isclosed():
                    break
            out("no-endpoint", 200, "no endpoint event")
        text = r.read(65536).decode("utf-8", "replace")
        out("ok" if '"result"' in text else "bad-reply", 200, text[:200])
    except ConnectionRefusedError as e:
        out("fail", "", "Connection refused: %s" % e)
    except socket.gaierror as e:
        out("fail", "", "bad address: %s" % e)
    except (socket.timeout, TimeoutError) as e:
        out("timeout", "", e)
    except OSError as e:
        out("fail", "", e)


if __name__ == "__main__":  # run by the doctor; importing it (core's import checks) does nothing
    main()
