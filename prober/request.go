package prober

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
)

// MaxBodyBytes bounds a request body; a larger one is answered 413.
const MaxBodyBytes = 64 << 10

// MaxWait caps the wait query parameter.
const MaxWait = 10 * time.Minute

// DefaultWaitPoll is how often a waiting request looks at the phases
// again when no event says they changed.
const DefaultWaitPoll = 100 * time.Millisecond

// enterBody is the optional body of PUT /pods/{pod} and PUT /dcs/{dc}.
type enterBody struct {
	Reason string `json:"reason"`
	// TTL is a Go duration such as "30m".
	TTL   string `json:"ttl"`
	Force bool   `json:"force"`
	// Evacuate moves the streams of one replica off the pods first;
	// KeepEvacuated leaves them where they went when the pods come back.
	Evacuate      bool `json:"evacuate"`
	KeepEvacuated bool `json:"keepEvacuated"`
	// Mode is "fence" (the default) or "drain"; RestoreLeaders (default
	// true) gives the leaderships back on exit.
	Mode           string `json:"mode"`
	RestoreLeaders *bool  `json:"restoreLeaders"`
}

// changeQuery holds the query parameters of PUT and DELETE.
type changeQuery struct {
	dryRun bool
	wait   time.Duration
}

// knownParams refuses (400) a query parameter of a request that changes
// something that is not one of names: a misspelt one (?dryrun=true,
// ?dry-run) would otherwise be ignored and the change made for real, as an
// unknown field of the body is refused rather than ignored. For the same
// reason it refuses a query that does not parse (URL.Query drops such a
// pair: ?dryRun=true;wait=5s, a bad %-escape) and a parameter given twice
// (?dryRun=false&dryRun=true: only the first would count).
func knownParams(r *http.Request, names ...string) error {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return maintenance.Errorf(maintenance.EInvalid, "invalid query %q: %v (separate parameters with &)", r.URL.RawQuery, err)
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if !slices.Contains(names, k) {
			takes := "no query parameter"
			if len(names) > 0 {
				takes = strings.Join(names, ", ")
			}
			return maintenance.Errorf(maintenance.EInvalid, "unknown query parameter %q: %s %s takes %s",
				k, r.Method, r.URL.Path, takes)
		}
		if n := len(values[k]); n > 1 {
			return maintenance.Errorf(maintenance.EInvalid, "query parameter %q given %d times: give it once", k, n)
		}
	}
	return nil
}

// noBody refuses (400) a body of a request that takes none, rather than
// ignore it: DELETE /pods/{pod} with {"restoreLeaders":false} would give
// the leaderships back, POST /balance with {"dc":"west"} balance every pod.
// what says where the request's options go instead.
func noBody(w http.ResponseWriter, r *http.Request, what string) error {
	raw, err := readBody(w, r)
	if err == nil && len(bytes.TrimSpace(raw)) > 0 {
		err = maintenance.Errorf(maintenance.EInvalid, "%s %s takes no body: %s", r.Method, r.URL.Path, what)
	}
	return err
}

// parseChangeQuery reads dryRun (a bool; present without a value means
// true) and wait (a Go duration, capped at MaxWait); any other parameter
// but those in more is refused.
func parseChangeQuery(r *http.Request, more ...string) (changeQuery, error) {
	var q changeQuery
	if err := knownParams(r, append([]string{"dryRun", "wait"}, more...)...); err != nil {
		return q, err
	}
	dry, _, err := parseBool(r, "dryRun")
	if err != nil {
		return q, err
	}
	q.dryRun = dry
	q.wait, err = durationParam(r, "wait", 0, MaxWait, true, "30s")
	return q, err
}

// durationParam reads the query parameter name as a Go duration: def when
// absent, capped at most, refused (400) when it does not parse or is
// negative (or zero, unless zero is allowed); example shows a good one in
// the message.
func durationParam(r *http.Request, name string, def, most time.Duration, zeroOK bool, example string) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		want := "a duration"
		if !zeroOK {
			want = "a positive duration"
		}
		return 0, maintenance.Errorf(maintenance.EInvalid, "invalid %s %q: want %s such as %s", name, v, want, example)
	}
	return min(d, most), nil
}

// readBody reads the whole body, at most MaxBodyBytes of it.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, maintenance.Errorf(maintenance.ETooLarge, "request body is larger than %d bytes", MaxBodyBytes)
	case err != nil:
		return nil, maintenance.Errorf(maintenance.EInvalid, "read request body: %v", err)
	}
	return b, nil
}

// parseEnterRequest reads the optional JSON body of a PUT strictly:
// unknown fields and trailing data are errors.
func parseEnterRequest(w http.ResponseWriter, r *http.Request, q changeQuery) (maintenance.Request, error) {
	req := maintenance.Request{DryRun: q.dryRun, RequestedBy: requestedBy(r)}
	raw, err := readBody(w, r)
	if err != nil {
		return req, err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return req, nil
	}
	var body enterBody
	if err := maintenance.DecodeStrict(raw, &body); err != nil {
		return req, maintenance.Errorf(maintenance.EInvalid, "invalid request body: %v", err)
	}
	if body.TTL != "" {
		ttl, err := time.ParseDuration(body.TTL)
		if err != nil {
			return req, maintenance.Errorf(maintenance.EInvalid, "invalid ttl %q: want a duration such as 30m", body.TTL)
		}
		req.TTL = ttl
	}
	if body.KeepEvacuated && !body.Evacuate {
		return req, maintenance.Errorf(maintenance.EInvalid, "keepEvacuated needs evacuate")
	}
	req.Reason, req.Force = body.Reason, body.Force
	req.Evacuate, req.KeepEvacuated = body.Evacuate, body.KeepEvacuated
	req.Mode, req.RestoreLeaders = body.Mode, body.RestoreLeaders
	return req, nil
}

// parseBool reads the bool query parameter name (present without a value
// means true) and whether it was given.
func parseBool(r *http.Request, name string) (value, given bool, err error) {
	values := r.URL.Query()
	if !values.Has(name) {
		return false, false, nil
	}
	v := values.Get(name)
	if v == "" {
		return true, true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, true, maintenance.Errorf(maintenance.EInvalid, "invalid %s %q: want true or false", name, v)
	}
	return b, true, nil
}

// noDryRun refuses dryRun=true on a DELETE rather than ignore it: a caller
// who believes a delete is only tried must not see it done.
func noDryRun(q changeQuery) error {
	if q.dryRun {
		return maintenance.Errorf(maintenance.EInvalid, "dryRun applies to PUT only")
	}
	return nil
}
