# Load generator for host/benches/memory/run.sh.
"""Posts N persons twice (the second copy with another email, same phone and
name: a duplicate that merges and queues an update) to a running leadgate,
100 leads per request, from a few threads. Prints the time taken."""
import http.client, json, sys, threading, time

host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
persons = int(sys.argv[4]) if len(sys.argv) > 4 else 50_000
first = ["ada","grace","linus","barbara","ken","margaret","dennis","frances","edsger","radia","donald","hedy","alan","karen","niklaus","sophie"]
last = ["lovelace","hopper","torvalds","liskov","thompson","hamilton","ritchie","allen","dijkstra","perlman","knuth","lamarr","turing","jones","wirth","wilson"]

def lead(i, copy):
    f, l = first[i % 16], last[(i // 16) % 16]
    phone = f"+1415{2000000 + i:07d}"
    email = f"{f}.{l}.{i}@example.com" if copy == 0 else f"{f}{i}@mail{i % 97}.example.org"
    return {"email": email, "phone": phone, "first_name": f.title(), "last_name": l.title(),
            # 256 persons a company, all with different names: persons i and
            # j share a company only when their names differ (with
            # `i % 5000` every 160,000th person had the same name at the
            # same company, which dedupe rightly merges: a million leads
            # were 160,000 persons).
            "company": f"Firm {i // 256} Holdings", "title": "Buyer", "city": "Boston", "country": "US"}

batches = []
for copy in (0, 1):
    for start in range(0, persons, 100):
        batches.append("\n".join(json.dumps(lead(i, copy)) for i in range(start, min(persons, start + 100))))

lock = threading.Lock()
idx = [0]
errors = [0]
def worker():
    conn = http.client.HTTPConnection(host, port)
    while True:
        with lock:
            if idx[0] >= len(batches):
                return
            b = batches[idx[0]]; idx[0] += 1
        for attempt in range(50):
            conn.request("POST", "/v1/leads", body=b, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})
            r = conn.getresponse(); r.read()
            if r.status == 429:
                time.sleep(1); continue
            if r.status not in (202, 207):
                errors[0] += 1
            break

t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"posted {2*persons} leads in {time.time()-t0:.1f} s, {errors[0]} errors")
