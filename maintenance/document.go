package maintenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Key prefixes of the stored document: "pod.<pod>" and "dc.<dc>" hold an
// Entry, "status.<pod>" holds a Status. They are the keys of the ConfigMap
// and of the "data" object of the file store.
const (
	docPodPrefix    = "pod."
	docDCPrefix     = "dc."
	docStatusPrefix = "status."
)

// Source values returned by Document.Desired.
const (
	SourcePod = "pod"
	SourceDC  = "dc"
)

// NewDocument returns an empty document with all maps allocated.
func NewDocument() *Document {
	return &Document{
		Pods:   map[string]Entry{},
		DCs:    map[string]Entry{},
		Status: map[string]Status{},
	}
}

// Clone returns a deep copy of d, so a caller may change it (for example
// inside Store.Update) without touching a document others still read. The
// copy always has all maps allocated. Clone of nil is nil.
func (d *Document) Clone() *Document {
	if d == nil {
		return nil
	}
	c := NewDocument()
	c.ResourceVersion = d.ResourceVersion
	for k, e := range d.Pods {
		c.Pods[k] = e.clone()
	}
	for k, e := range d.DCs {
		c.DCs[k] = e.clone()
	}
	maps.Copy(c.Status, d.Status)
	return c
}

// clone copies the entry, ExpiresAt included, so that no pointer is shared.
func (e Entry) clone() Entry {
	if e.ExpiresAt != nil {
		t := *e.ExpiresAt
		e.ExpiresAt = &t
	}
	return e
}

// Data encodes the document into the ConfigMap-style key/value form shared
// by both stores: "pod.<pod>" and "dc.<dc>" map to Entry JSON and
// "status.<pod>" to Status JSON. ResourceVersion is not part of the data; a
// store keeps it beside. Every key is checked to be a valid ConfigMap key so
// that a bad name fails here and not at the API server.
func (d *Document) Data() (map[string]string, error) {
	data := make(map[string]string, len(d.Pods)+len(d.DCs)+len(d.Status))
	put := func(prefix, name string, v any) error {
		key := prefix + name
		if err := docCheckKey(prefix, name, key); err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		data[key] = string(b)
		return nil
	}
	for name, e := range d.Pods {
		if err := put(docPodPrefix, name, e); err != nil {
			return nil, err
		}
	}
	for name, e := range d.DCs {
		if err := put(docDCPrefix, name, e); err != nil {
			return nil, err
		}
	}
	for name, s := range d.Status {
		if err := put(docStatusPrefix, name, s); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// DecodeData is the inverse of Data: it builds a document from the stored
// key/value form, read at resourceVersion.
//
// Decoding is strict, as configuration is in this project: a key with an
// unknown prefix, an empty name, a value that is not the JSON of its type, a
// JSON field the type does not have or an unknown phase is an *Error with
// code EInvalid naming the key. Tolerating such keys would be friendlier to a
// newer writer, but a store re-encodes the whole document on every write and
// the Document type has nowhere to keep what it does not understand, so
// tolerating would mean dropping them silently; a clear error is better than
// a lost entry.
func DecodeData(data map[string]string, resourceVersion string) (*Document, error) {
	d := NewDocument()
	d.ResourceVersion = resourceVersion
	// Sorted keys make the error, when several keys are bad, deterministic.
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		value := data[key]
		switch {
		case strings.HasPrefix(key, docPodPrefix):
			name := strings.TrimPrefix(key, docPodPrefix)
			e, err := docDecodeEntry(key, name, value)
			if err != nil {
				return nil, err
			}
			d.Pods[name] = e
		case strings.HasPrefix(key, docDCPrefix):
			name := strings.TrimPrefix(key, docDCPrefix)
			e, err := docDecodeEntry(key, name, value)
			if err != nil {
				return nil, err
			}
			d.DCs[name] = e
		case strings.HasPrefix(key, docStatusPrefix):
			name := strings.TrimPrefix(key, docStatusPrefix)
			if name == "" {
				return nil, Errorf(EInvalid, "key %q: empty pod name", key)
			}
			var s Status
			if err := DecodeStrict([]byte(value), &s); err != nil {
				return nil, Errorf(EInvalid, "key %q: %v", key, err)
			}
			if !s.Phase.valid() {
				return nil, Errorf(EInvalid, "key %q: unknown phase %q", key, s.Phase)
			}
			d.Status[name] = s
		default:
			return nil, Errorf(EInvalid, "key %q: unknown key, want %q, %q or %q followed by a name",
				key, docPodPrefix, docDCPrefix, docStatusPrefix)
		}
	}
	return d, nil
}

func docDecodeEntry(key, name, value string) (Entry, error) {
	if name == "" {
		return Entry{}, Errorf(EInvalid, "key %q: empty name", key)
	}
	var e Entry
	if err := DecodeStrict([]byte(value), &e); err != nil {
		return Entry{}, Errorf(EInvalid, "key %q: %v", key, err)
	}
	return e, nil
}

// DecodeStrict decodes exactly one JSON value from data into v: unknown
// object fields and anything after the value are errors, so that a typo in
// a stored document or a request body is refused rather than ignored.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func docCheckKey(prefix, name, key string) error {
	if name == "" {
		return Errorf(EInvalid, "%sempty name", prefix)
	}
	if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
		return Errorf(EInvalid, "key %q: %s", key, strings.Join(errs, "; "))
	}
	return nil
}

// valid reports whether p is one of the declared phases.
func (p Phase) valid() bool {
	switch p {
	case PhaseActive, PhaseRequested, PhaseHandingOff, PhaseFencing, PhaseInMaintenance,
		PhaseUnfencing, PhaseCatchingUp, PhaseFailed:
		return true
	}
	return false
}

// Desired says whether pod, of datacenter dc, is wanted in maintenance at
// now and by which entry: source is SourcePod ("pod") for the pod's own
// entry, which wins because it is the more specific, or SourceDC ("dc") for
// its datacenter's. Expired entries do not count. An empty dc matches no dc
// entry.
func (d *Document) Desired(pod, dc string, now time.Time) (e Entry, source string, ok bool) {
	if e, ok := d.Pods[pod]; ok && !e.Expired(now) {
		return e.clone(), SourcePod, true
	}
	if dc != "" {
		if e, ok := d.DCs[dc]; ok && !e.Expired(now) {
			return e.clone(), SourceDC, true
		}
	}
	return Entry{}, "", false
}

// Expire deletes every pod and dc entry whose TTL has passed at now, as a
// DELETE would, and reports whether it changed anything. Statuses stay: each
// node's reconciler removes its own once it is Active again.
func (d *Document) Expire(now time.Time) bool {
	changed := false
	for name, e := range d.Pods {
		if e.Expired(now) {
			delete(d.Pods, name)
			changed = true
		}
	}
	for name, e := range d.DCs {
		if e.Expired(now) {
			delete(d.DCs, name)
			changed = true
		}
	}
	return changed
}

// ValidName checks that s, a pod name taken from a request, is a DNS-1123
// label (what a StatefulSet's pod names are), and returns an *Error with
// code EInvalid saying why it is not.
func ValidName(s string) error {
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		return Errorf(EInvalid, "invalid name %q: not a DNS-1123 label: %s", s, strings.Join(errs, "; "))
	}
	return nil
}

// ValidDCName checks a dc name taken from a request. A dc is a NATS cluster
// name (or a pod label), which may hold upper case letters, '_' and '.':
// anything that makes a valid ConfigMap key "dc.<dc>" is accepted.
func ValidDCName(s string) error {
	if s == "" {
		return Errorf(EInvalid, "invalid dc name: empty")
	}
	if errs := validation.IsConfigMapKey(docDCPrefix + s); len(errs) > 0 {
		return Errorf(EInvalid, "invalid dc name %q: %s", s, strings.Join(errs, "; "))
	}
	return nil
}
