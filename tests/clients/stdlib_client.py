#!/usr/bin/env python3
"""A client of mb written with Python's standard library only (http.client + ssl), as an
integrator without SDKs would write it. The end-to-end tests run it against a real stack.

    stdlib_client.py submit  HOST PORT CA CERT KEY [IDEMPOTENCY_KEY]
    stdlib_client.py status  HOST PORT CA CERT KEY MESSAGE_ID
    stdlib_client.py get     HOST PORT CA CERT KEY PATH

Prints one JSON line: {"status": <HTTP status>, "body": <parsed JSON body>}.
"""
import http.client
import json
import ssl
import sys


def connect(host, port, ca, cert, key):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)


def answer(resp):
    raw = resp.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    print(json.dumps({"status": resp.status, "body": body}))


def main(argv):
    verb, host, port, ca, cert, key = argv[1:7]
    conn = connect(host, port, ca, cert, key)
    if verb == "submit":
        headers = {"Content-Type": "application/json"}
        if len(argv) > 7:
            headers["Idempotency-Key"] = argv[7]
        body = json.dumps({"sender_number": "+14155550123",
                           "message_body": "from Python's standard library: é ✓"})
        conn.request("POST", "/api/v1/messages", body, headers)
    elif verb == "status":
        conn.request("GET", "/api/v1/messages/" + argv[7])
    elif verb == "get":
        conn.request("GET", argv[7])
    else:
        sys.exit("unknown verb " + verb)
    answer(conn.getresponse())


if __name__ == "__main__":
    main(sys.argv)
