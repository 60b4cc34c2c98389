package natsraft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// How the prober reads a NATS server's monitoring endpoint: one GET,
// decoded as it is read, and bounded. The collector, the fences and the
// link verifier all read through it.

// monitorRequestTimeout bounds one request of a fence or of the link
// verifier to a monitoring endpoint.
const monitorRequestTimeout = 5 * time.Second

// errNotFound is the error of a 404: the endpoint (or the account asked
// for) does not exist on that server.
var errNotFound = errors.New("not found")

// getJSON GETs u with client and decodes the answer into into as it is
// read (see decodeBody, which also bounds it). A 404 wraps errNotFound.
// The errors do not name the request: the callers do.
func getJSON(ctx context.Context, client *http.Client, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNotFound
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return decodeBody(resp, maxBody, into)
}

// docOptions decode a monitoring document as leniently as encoding/json
// did: a repeated name or a string that is not valid UTF-8 is not a
// reason to lose a node's report. Names match exactly, as NATS writes
// them; a time.Duration says its format in its tag (nanoseconds).
var docOptions = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// decodeBody decodes a response body of at most maxBody bytes into into
// while it is read. The documents of ten thousand groups are 5–7 MB each:
// reading one whole before decoding it cost a buffer as large per request
// in flight, and zeroing and collecting those buffers about an eighth of
// a sweep's CPU; encoding/json's decoder also validated every byte twice.
// go-json-experiment/json (encoding/json/v2 to be) decodes token by token
// from a small buffer, about 1.6 times as fast on /jsz.
func decodeBody(resp *http.Response, maxBody int64, into any) error {
	if resp.ContentLength > maxBody {
		return fmt.Errorf("body of %d bytes is over the limit of %d", resp.ContentLength, maxBody)
	}
	// One byte more than the limit tells a body at the limit from a
	// longer one.
	body := &io.LimitedReader{R: resp.Body, N: maxBody + 1}
	err := json.UnmarshalRead(body, into, docOptions)
	if body.N <= 0 {
		return fmt.Errorf("body over the limit of %d bytes", maxBody)
	}
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// decodeDoc decodes a monitoring document's body into into.
func decodeDoc(body []byte, into any) error {
	if err := json.Unmarshal(body, into, docOptions); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// monitorURL joins a monitoring base URL, an endpoint path and a query.
func monitorURL(base, path string, q url.Values) string {
	u := strings.TrimSuffix(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// maxBody bounds a monitoring document: the /jsz of ten thousand groups
// is 5–7 MB; a body past this is not one to decode.
const maxBody = 64 << 20

// getDoc decodes the answer of GET base+path?q into into; its errors name
// the whole URL, for callers that ask several servers.
func getDoc(ctx context.Context, client *http.Client, base, path string, q url.Values, into any) error {
	if base == "" {
		return errors.New("no monitoring URL configured")
	}
	u := monitorURL(base, path, q)
	if err := getJSON(ctx, client, u, into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
