#!/usr/bin/env bash
# walkthrough.sh — the README's curl walkthrough, against a running prober
# (`make run` in another terminal). Prints each command and its answer.
# Usage: scripts/walkthrough.sh [BASE_URL]   (default http://127.0.0.1:8889)
set -uo pipefail
base=${1:-http://127.0.0.1:8889}
run() {
	printf '\n$ %s\n' "$*"
	eval "$@"
	echo
}
j() { python3 -m json.tool 2>/dev/null || cat; }
run "curl -s $base/livez"
run "curl -s $base/config"
run "curl -s $base/pods/nats-1"
run "curl -s $base/dcs/dc1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"dc\"], [(p[\"pod\"], p[\"phase\"]) for p in d[\"pods\"]])'"
run "curl -s -X PUT '$base/pods/nats-1?wait=30s' -d '{\"reason\":\"kernel upgrade\",\"ttl\":\"2h\"}'"
# nats-1's monitoring port (8223): no routes left; a peer (8222) no longer routes to nats-1
run "curl -s http://127.0.0.1:8223/routez | grep -E '\"server_name|num_routes'"
run "curl -s http://127.0.0.1:8222/routez | grep -c '\"remote_name\": \"nats-1\"'"
run "curl -s -X PUT $base/pods/nats-2"
run "curl -s -X PUT '$base/dcs/dc1?dryRun=true' | python3 -c 'import json,sys; d=json.load(sys.stdin); print(\"safe:\", d[\"safe\"]); [print(\" \", v[\"reason\"]) for v in d[\"violations\"]]'"
run "curl -s -X PUT $base/dcs/dc1 | head -4"
run "curl -s -X DELETE $base/dcs/dc1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print([(p[\"pod\"], p[\"phase\"], p.get(\"via\", \"\")) for p in d[\"pods\"]])'"
run "curl -s -i -X PUT $base/pods/Nats_1 | sed -n '1p;/^{/,\$p'"
run "curl -s -i -X POST $base/pods/nats-1 | grep -E 'HTTP|Allow|message'"
run "curl -s $base/config"
run "curl -s -X PUT $base/config"
run "curl -s '$base/readyz?pod=nats-1'"
run "curl -s $base/raft | python3 -c 'import json,sys; d=json.load(sys.stdin); [print(f[\"severity\"], f[\"cause\"], \"-\", f[\"summary\"], \"\\n  remedy:\", \" \".join(f[\"remedy\"])) for f in d[\"findings\"]]'"
run "curl -s -X DELETE '$base/pods/nats-1?wait=60s'"
run "curl -s $base/config"
run "curl -s $base/readyz"
run "curl -s $base/metrics | grep -E '^prober_(raft_groups|maintenance_phase|http_requests_total)' | grep -E 'raft_groups|nats-1.*Active|PUT'"
run "curl -s $base/raft | python3 -c 'import json,sys; d=json.load(sys.stdin); [print(g[\"name\"], \"leader\", g.get(\"leader\"), [p[\"name\"]+(\"*\" if p.get(\"leader\") else \"\")+(\"\" if p[\"current\"] else \"!\") for p in g[\"peers\"]]) for g in d[\"groups\"]]; print(\"findings:\", len(d.get(\"findings\") or []))'"
