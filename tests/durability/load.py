#!/usr/bin/env python3
"""tests/durability/load.py -- clients that POST orders to orderd until told to stop.

usage: load.py URL OUT CLIENTS STOPFILE CUSTOMER

CLIENTS threads, each with one keep-alive connection, POST small valid orders
(customer CUSTOMER-<n>) one after the other until the file STOPFILE exists.
The id of every order answered 202 is appended to OUT as one line and flushed
at once, after the whole answer has arrived: OUT is the list of acknowledged
orders, and it lives outside the file system under test. A client whose
connection fails (the daemon was killed) reconnects after 50 ms and goes on
until STOPFILE appears. At the end OUT.stats gets one line:
"sent=N acked=N s503=N other=N errors=N".
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    url, out, clients, stopfile, customer = sys.argv[1:]
    target = urllib.parse.urlsplit(url)
    lock = threading.Lock()
    counts = {"sent": 0, "acked": 0, "s503": 0, "other": 0, "errors": 0}
    acked = open(out, "a", encoding="ascii")

    def count(key):
        with lock:
            counts[key] += 1

    def client(n):
        body = json.dumps({"customer_id": "%s-%d" % (customer, n),
                           "items": [{"item": "Widget", "quantity": 1}]})
        conn = None
        while not os.path.exists(stopfile):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=15)
                conn.request("POST", "/orders", body, {"Content-Type": "application/json"})
                count("sent")
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 202:
                    order_id = json.loads(data)["order_id"]
                    with lock:
                        acked.write(order_id + "\n")
                        acked.flush()
                        counts["acked"] += 1
                elif resp.status == 503:
                    count("s503")
                    time.sleep(0.05)
                else:
                    count("other")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                count("errors")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(int(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked.close()
    with open(out + ".stats", "w", encoding="ascii") as f:
        f.write(" ".join("%s=%d" % kv for kv in counts.items()) + "\n")


if __name__ == "__main__":
    main()
