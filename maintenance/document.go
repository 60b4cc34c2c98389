package maintenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prober-dev/prober/natsraft"
)

// Key prefixes of the stored document: "pod.<pod>" and "dc.<dc>" hold an
// Entry, "status.<pod>" holds a Status, "rollout.<name>" a Rollout. They are the keys of the ConfigMap
// and of the "data" object of the file store.
const (
	podKeyPrefix     = "pod."
	dcKeyPrefix      = "dc."
	statusKeyPrefix  = "status."
	rolloutKeyPrefix = "rollout."
)

// Source values returned by Document.Desired.
const (
	SourcePod = "pod"
	SourceDC  = "dc"
)

// NewDocument returns an empty document with all maps allocated.
func NewDocument() *Document {
	return &Document{
		Pods:     map[string]Entry{},
		DCs:      map[string]Entry{},
		Status:   map[string]Status{},
		Rollouts: map[string]Rollout{},
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
	for k, st := range d.Status {
		c.Status[k] = st.clone()
	}
	for k, ro := range d.Rollouts {
		c.Rollouts[k] = ro.clone()
	}
	return c
}

// clone copies the entry, ExpiresAt included, so that no pointer is shared.
func (e Entry) clone() Entry {
	if e.ExpiresAt != nil {
		t := *e.ExpiresAt
		e.ExpiresAt = &t
	}
	e.RestoreLeaders = cloneBool(e.RestoreLeaders)
	return e
}

func cloneGroupRefs(gs []GroupRef) []GroupRef {
	if gs == nil {
		return nil
	}
	out := make([]GroupRef, len(gs))
	for i, g := range gs {
		g.Peers = slices.Clone(g.Peers)
		out[i] = g
	}
	return out
}

// clone copies the status so that no slice or pointer is shared.
func (st Status) clone() Status {
	st.Evacuated = slices.Clone(st.Evacuated)
	st.Leaders = slices.Clone(st.Leaders)
	st.GivenBack = slices.Clone(st.GivenBack)
	st.NotGivenBack = slices.Clone(st.NotGivenBack)
	st.RestoreLeaders = cloneBool(st.RestoreLeaders)
	st.Dark = cloneGroupRefs(st.Dark)
	return st
}

func cloneBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// Data encodes the document into the ConfigMap-style key/value form shared
// by both stores: "pod.<pod>" and "dc.<dc>" map to Entry JSON and
// "status.<pod>" to Status JSON. ResourceVersion is not part of the data; a
// store keeps it beside. Every key is checked to be a valid ConfigMap key so
// that a bad name fails here and not at the API server.
func (d *Document) Data() (map[string]string, error) {
	data := make(map[string]string, len(d.Pods)+len(d.DCs)+len(d.Status)+len(d.Rollouts))
	put := func(prefix, name string, v any) error {
		key := prefix + name
		if err := checkKey(prefix, name, key); err != nil {
			return err
		}
		if why := valueProblem(prefix, name, v); why != "" {
			return Errorf(EInvalid, "key %q: %s", key, why)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		data[key] = string(b)
		return nil
	}
	for name, e := range d.Pods {
		if err := put(podKeyPrefix, name, e); err != nil {
			return nil, err
		}
	}
	for name, e := range d.DCs {
		if err := put(dcKeyPrefix, name, e); err != nil {
			return nil, err
		}
	}
	for name, s := range d.Status {
		if err := put(statusKeyPrefix, name, s); err != nil {
			return nil, err
		}
	}
	for name, ro := range d.Rollouts {
		if err := put(rolloutKeyPrefix, name, ro); err != nil {
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
// code EInvalid naming the key. So is what Data would refuse to write (a
// key that is no ConfigMap key, a pod entry whose name is no pod name, …,
// see valueProblem): a ConfigMap edited by hand may hold anything, and a
// document that decodes is one the prober can act on and write back whole,
// never half of one. Tolerating such keys would be friendlier to a
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
		if err := decodeKey(d, key, data[key]); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// decodeKey decodes one stored key and its value into d.
func decodeKey(d *Document, key, value string) error {
	var prefix string
	switch {
	case strings.HasPrefix(key, podKeyPrefix):
		prefix = podKeyPrefix
	case strings.HasPrefix(key, dcKeyPrefix):
		prefix = dcKeyPrefix
	case strings.HasPrefix(key, statusKeyPrefix):
		prefix = statusKeyPrefix
	case strings.HasPrefix(key, rolloutKeyPrefix):
		if why := keyProblem(key); why != "" {
			return Errorf(EInvalid, "key %q: %s", key, why)
		}
		name := strings.TrimPrefix(key, rolloutKeyPrefix)
		ro, err := decodeRollout(key, name, value)
		if err != nil {
			return err
		}
		d.Rollouts[name] = ro
		return nil
	default:
		return Errorf(EInvalid, "key %q: unknown key, want %q, %q, %q or %q followed by a name",
			key, podKeyPrefix, dcKeyPrefix, statusKeyPrefix, rolloutKeyPrefix)
	}
	name := strings.TrimPrefix(key, prefix)
	if name == "" && prefix == statusKeyPrefix {
		return Errorf(EInvalid, "key %q: empty pod name", key)
	}
	if name == "" {
		return Errorf(EInvalid, "key %q: empty name", key)
	}
	if why := keyProblem(key); why != "" {
		return Errorf(EInvalid, "key %q: %s", key, why)
	}
	var v any = &Entry{}
	if prefix == statusKeyPrefix {
		v = &Status{}
	}
	if err := DecodeStrict([]byte(value), v); err != nil {
		return Errorf(EInvalid, "key %q: %v", key, err)
	}
	if why := valueProblem(prefix, name, v); why != "" {
		return Errorf(EInvalid, "key %q: %s", key, why)
	}
	switch v := v.(type) {
	case *Status:
		d.Status[name] = *v
	case *Entry:
		if prefix == podKeyPrefix {
			d.Pods[name] = *v
		} else {
			d.DCs[name] = *v
		}
	}
	return nil
}

// valueProblem says why the entry or status v (a value or a pointer) may
// not be stored under prefix+name, "" when it may. A pod entry must name
// a pod (ValidName) and a dc entry a dc (ValidDCName): one the API could
// neither show nor delete must not be acted on. A status is keyed by its
// node's NATS server name, which its reconciler writes, so any ConfigMap
// key but "." and ".." will do; its phase must be one of the declared
// ones, the entry it names one of the two kinds of entry keys and its
// evacuated streams "<account>/<stream>". An entry may not expire before
// it was made.
func valueProblem(prefix, name string, v any) string {
	switch v := v.(type) {
	case Entry:
		return valueProblem(prefix, name, &v)
	case Status:
		return valueProblem(prefix, name, &v)
	case *Entry:
		var err error
		if prefix == podKeyPrefix {
			err = ValidName(name)
		} else {
			err = ValidDCName(name)
		}
		if err != nil {
			return ErrorMessage(err)
		}
		if err := ValidMode(v.Mode); err != nil {
			return ErrorMessage(err)
		}
		if v.ExpiresAt != nil && !v.Since.IsZero() && v.ExpiresAt.Before(v.Since) {
			return fmt.Sprintf("expiresAt %s is before since %s",
				v.ExpiresAt.Format(time.RFC3339Nano), v.Since.Format(time.RFC3339Nano))
		}
	case *Status:
		if name == "." || name == ".." {
			return fmt.Sprintf("invalid pod name %q", name)
		}
		if !v.Phase.valid() {
			return fmt.Sprintf("unknown phase %q", v.Phase)
		}
		if err := ValidMode(v.Mode); err != nil {
			return ErrorMessage(err)
		}
		if why := entryKeyProblem(v.Entry); why != "" {
			return fmt.Sprintf("entry %q: %s", v.Entry, why)
		}
		for _, s := range v.Evacuated {
			if _, err := natsraft.ParseStreamRef(s); err != nil {
				return "evacuated " + err.Error()
			}
		}
		for _, g := range v.Dark {
			switch {
			case g.Kind != natsraft.KindMeta && g.Kind != natsraft.KindStream && g.Kind != natsraft.KindConsumer:
				return fmt.Sprintf("dark: unknown group kind %q", g.Kind)
			case g.Group == "":
				return "dark: a group without a name"
			case len(g.Peers) == 0:
				return fmt.Sprintf("dark: %s %s has no members", g.Kind, g.Group)
			}
		}
	}
	return ""
}

// entryKeyProblem says why key, the entry a status names, is not the key
// of a pod or dc entry, "" when it is one or empty.
func entryKeyProblem(key string) string {
	if key == "" {
		return ""
	}
	if name, ok := strings.CutPrefix(key, podKeyPrefix); ok {
		if err := ValidName(name); err != nil {
			return ErrorMessage(err)
		}
		return ""
	}
	if name, ok := strings.CutPrefix(key, dcKeyPrefix); ok {
		if err := ValidDCName(name); err != nil {
			return ErrorMessage(err)
		}
		return ""
	}
	return fmt.Sprintf("not %q or %q followed by a name", podKeyPrefix, dcKeyPrefix)
}

// DecodeStrict decodes exactly one JSON value from data into v: unknown
// object fields, a key given twice in an object, a field's name in another
// case and anything after the value are errors, so that a typo in a stored
// document or a request body is refused rather than ignored.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the JSON value")
	}
	keys := json.NewDecoder(bytes.NewReader(data))
	keys.UseNumber()
	return exactKeys(keys, reflect.TypeOf(v))
}

// exactKeys walks the next JSON value of dec, decoded into a t, and refuses
// what encoding/json accepts even with DisallowUnknownFields: a key given
// twice in an object (the last one wins: {"force":false,"force":true}) and
// a struct field's name in another case ({"FORCE":true}). A type that
// decodes itself (json.Unmarshaler) is checked for duplicates only.
func exactKeys(dec *json.Decoder, t reflect.Type) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		t = nil
	}
	switch delim {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := exactKeys(dec, elem); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			if seen[key] {
				return fmt.Errorf("key %q given twice in one object", key)
			}
			seen[key] = true
			var next reflect.Type
			switch {
			case fields != nil:
				ft, known := fields[key]
				if !known {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return fmt.Errorf("key %q: the field is %q (keys are case-sensitive)", key, name)
						}
					}
				}
				next = ft
			case t != nil && t.Kind() == reflect.Map:
				next = t.Elem()
			}
			if err := exactKeys(dec, next); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// jsonFields maps the JSON names of struct type t's fields (embedded
// structs' included) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				maps.Copy(out, jsonFields(ft))
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = ft
	}
	return out
}

func checkKey(prefix, name, key string) error {
	if name == "" {
		return Errorf(EInvalid, "%sempty name", prefix)
	}
	if why := keyProblem(key); why != "" {
		return Errorf(EInvalid, "key %q: %s", key, why)
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

// ForcedFence reports whether an entry in force at now fences pod, of
// datacenter dc, with force: its own, or its dc's (which its own, when it
// is a fence too, does not undo). A drain of its own leaves the pod
// routed, whatever its dc asks.
func (d *Document) ForcedFence(pod, dc string, now time.Time) bool {
	own, hasOwn := d.Pods[pod]
	if hasOwn && !own.Expired(now) {
		if own.Drain() {
			return false
		}
		if own.Force {
			return true
		}
	}
	e, ok := d.DCs[dc]
	return dc != "" && ok && e.forcesFence(now)
}

// forcesFence reports whether e, in force at now, fences with force.
func (e Entry) forcesFence(now time.Time) bool {
	return e.Force && !e.Expired(now) && !e.Drain()
}

// Phase is the phase of pod, of datacenter dc, at now: as its reconciler
// reported it, Requested while maintenance is desired and nothing is
// reported yet, else Active. A nil document asks for nothing.
func (d *Document) Phase(pod, dc string, now time.Time) Phase {
	if d == nil {
		return PhaseActive
	}
	if st, ok := d.Status[pod]; ok && st.Phase != "" {
		return st.Phase
	}
	if _, _, desired := d.Desired(pod, dc, now); desired {
		return PhaseRequested
	}
	return PhaseActive
}

// HeldAtBoot says whether pod, starting again (a pod recreated by a node
// drain, say), must come up fenced and quiesced, and for which entry: its
// own entry, its dc label's (dcLabel, "" when it has none), or the entry
// its reconciler last reported it entering for, while that entry is still
// in force. The last covers a dc entry by NATS cluster name, which a node
// cannot tell before its server runs. A drain holds nothing: the pod stays
// routed and serving.
func (d *Document) HeldAtBoot(pod, dcLabel string, now time.Time) (key string, ok bool) {
	if d == nil {
		return "", false
	}
	if e, source, desired := d.Desired(pod, dcLabel, now); desired {
		if e.Drain() {
			// A drain keeps the pod routed and serving.
			return "", false
		}
		if source == SourceDC {
			return dcKeyPrefix + dcLabel, true
		}
		return podKeyPrefix + pod, true
	}
	st, reported := d.Status[pod]
	if !reported || !enteringPhase(st.Phase) {
		return "", false
	}
	if dc, isDC := strings.CutPrefix(st.Entry, dcKeyPrefix); isDC {
		if e, ok := d.DCs[dc]; ok && !e.Expired(now) && !e.Drain() {
			return st.Entry, true
		}
	}
	return "", false
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
	if why := labelProblem(s); why != "" {
		return Errorf(EInvalid, "invalid name %q: not a DNS-1123 label: %s", s, why)
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
	if s == "." || s == ".." {
		return Errorf(EInvalid, "invalid dc name %q: not a name", s)
	}
	if why := keyProblem(dcKeyPrefix + s); why != "" {
		return Errorf(EInvalid, "invalid dc name %q: %s", s, why)
	}
	return nil
}

// The rules of Kubernetes names and ConfigMap keys, which the stored
// document's keys and the pod names of a StatefulSet follow.
const (
	maxLabelLength = 63
	maxKeyLength   = 253
)

// labelProblem says why s is not a DNS-1123 label (RFC 1123: lower case
// letters, digits and '-', starting and ending with a letter or a digit, at
// most 63 characters), "" when it is one.
func labelProblem(s string) string {
	const rule = "lower case letters, digits and '-', starting and ending with a letter or a digit"
	switch {
	case s == "":
		return "empty"
	case len(s) > maxLabelLength:
		return fmt.Sprintf("longer than %d characters", maxLabelLength)
	case strings.IndexFunc(s, func(r rune) bool { return !isLowerAlnum(r) && r != '-' }) >= 0,
		!isLowerAlnum(rune(s[0])), !isLowerAlnum(rune(s[len(s)-1])):
		return rule
	}
	return ""
}

// keyProblem says why s is not a valid ConfigMap key (letters, digits,
// '-', '_' and '.', at most 253 characters, not "." or ".."), "" when it
// is one.
func keyProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > maxKeyLength:
		return fmt.Sprintf("longer than %d characters", maxKeyLength)
	case s == "." || s == "..":
		return "must not be '.' or '..'"
	case strings.IndexFunc(s, func(r rune) bool {
		return !isLowerAlnum(r) && !('A' <= r && r <= 'Z') && r != '-' && r != '_' && r != '.'
	}) >= 0:
		return "letters, digits, '-', '_' and '.' only"
	}
	return ""
}

func isLowerAlnum(r rune) bool { return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' }
