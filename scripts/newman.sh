#!/usr/bin/env bash
# Runs the Postman collection of deploy/postman with newman.
#
#   scripts/newman.sh              build prober, start the embedded default on free loopback ports
#                                  with a temp data dir, wait until it is ready, run the collection,
#                                  stop it; the exit code is newman's
#   scripts/newman.sh run URL      run the collection against a prober already serving at URL
#   scripts/newman.sh install      only install newman; prints the path of its binary
#
# newman (pinned in scripts/newman/package-lock.json) is installed with npm into .cache/newman,
# once per lock file. Extra arguments after "run URL" go to newman (e.g. --verbose).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/newman"
collection="$root/deploy/postman/prober.postman_collection.json"
environment="$root/deploy/postman/prober.postman_environment.json"

die() { echo "newman.sh: $*" >&2; exit 1; }

install_newman() {
	command -v npm >/dev/null || die "npm is needed (Debian: apt-get install npm)"
	mkdir -p "$cache"
	# One installer at a time: a test and a person may run this together.
	exec 9>"$cache.lock"
	if command -v flock >/dev/null; then flock 9; fi
	if [ ! -x "$cache/node_modules/.bin/newman" ] ||
		! cmp -s "$root/scripts/newman/package-lock.json" "$cache/package-lock.json"; then
		rm -rf "$cache/node_modules"
		cp "$root/scripts/newman/package.json" "$root/scripts/newman/package-lock.json" "$cache/"
		(cd "$cache" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
			{ rm -f "$cache/package-lock.json"; die "npm ci failed"; }
	fi
	exec 9>&-
	echo "$cache/node_modules/.bin/newman"
}

run_collection() {
	local url=$1
	shift
	local newman
	newman=$(install_newman)
	"$newman" run "$collection" -e "$environment" --env-var "baseUrl=$url" \
		--timeout-request 120000 --color off --disable-unicode "$@"
}

# http_ok URL: exit 0 when GET URL answers 200 (node is there, since npm is).
http_ok() {
	node -e 'require("http").get(process.argv[1], r => { r.resume(); process.exit(r.statusCode === 200 ? 0 : 1) })
		.on("error", () => process.exit(1)).setTimeout(2000, function () { this.destroy() })' "$1"
}

# The prober started by standalone, and its folder; globals, so that the
# EXIT trap still sees them.
prober_pid=""
work=""

stop_prober() {
	if [ -n "$prober_pid" ] && kill -0 "$prober_pid" 2>/dev/null; then
		kill "$prober_pid" 2>/dev/null || true
		wait "$prober_pid" 2>/dev/null || true
	fi
	prober_pid=""
	if [ -n "$work" ]; then rm -rf "$work"; fi
	work=""
}

standalone() {
	command -v go >/dev/null || die "go is needed"
	local newman url="" rc=0
	newman=$(install_newman)
	work=$(mktemp -d)
	trap stop_prober EXIT
	echo "newman.sh: building prober" >&2
	(cd "$root" && go build -o "$work/prober" ./cmd/prober)
	"$work/prober" embedded --listen 127.0.0.1:0 --client-port 0 --monitor-port 0 \
		--data-dir "$work/data" --log-format json --log-level warn >"$work/stdout" 2>"$work/stderr" &
	prober_pid=$!
	# The banner names the bound address: "prober: maintenance API on http://127.0.0.1:PORT".
	for _ in $(seq 1 900); do
		url=$(sed -n 's|^prober: maintenance API on \(http://[^ ]*\).*|\1|p' "$work/stdout")
		[ -n "$url" ] && break
		kill -0 "$prober_pid" 2>/dev/null || { cat "$work/stderr" >&2; die "prober exited while starting"; }
		sleep 0.1
	done
	[ -n "$url" ] || die "prober did not start within 90s"
	for path in /livez /readyz; do
		for _ in $(seq 1 300); do
			http_ok "$url$path" && break
			sleep 0.2
		done
		http_ok "$url$path" || die "$url$path is not 200 within 60s"
	done
	echo "newman.sh: prober ready at $url" >&2
	"$newman" run "$collection" -e "$environment" --env-var "baseUrl=$url" \
		--timeout-request 120000 --color off --disable-unicode || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "newman.sh: prober's log (last 50 lines):" >&2
		tail -n 50 "$work/stderr" >&2
	fi
	stop_prober
	return "$rc"
}

case "${1:-}" in
install) install_newman ;;
run)
	[ $# -ge 2 ] || die "usage: scripts/newman.sh run URL [newman flags]"
	shift
	run_collection "$@"
	;;
"") standalone ;;
*) die "usage: scripts/newman.sh [install | run URL [newman flags]]" ;;
esac
