package maintenance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var docT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func docTime(d time.Duration) *time.Time {
	t := docT0.Add(d)
	return &t
}

func docSample() *Document {
	d := NewDocument()
	d.ResourceVersion = "7"
	d.Pods["nats-0"] = Entry{Reason: "kernel upgrade", RequestedBy: "ops", Since: docT0, ExpiresAt: docTime(time.Hour), Force: true}
	d.Pods["nats-1"] = Entry{Since: docT0}
	d.DCs["east"] = Entry{Reason: "rack move", Since: docT0.Add(time.Minute)}
	d.Status["nats-0"] = Status{Phase: PhaseInMaintenance, Message: "fenced", ObservedAt: docT0.Add(2 * time.Second), PhaseSince: docT0.Add(time.Second)}
	d.Status["nats-2"] = Status{Phase: PhaseFailed, Message: "hand off: timeout", ObservedAt: docT0, PhaseSince: docT0}
	return d
}

func TestDocumentRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		doc  *Document
	}{
		{"empty", NewDocument()},
		{"full", docSample()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.doc.Data()
			require.NoError(t, err)
			assert.Len(t, data, len(tt.doc.Pods)+len(tt.doc.DCs)+len(tt.doc.Status))
			got, err := DecodeData(data, tt.doc.ResourceVersion)
			require.NoError(t, err)
			assert.Equal(t, tt.doc, got)
			again, err := got.Data()
			require.NoError(t, err)
			assert.Equal(t, data, again)
		})
	}
}

func TestDocumentDataShape(t *testing.T) {
	data, err := docSample().Data()
	require.NoError(t, err)
	require.Contains(t, data, "pod.nats-0")
	require.Contains(t, data, "dc.east")
	require.Contains(t, data, "status.nats-0")
	assert.NotContains(t, data, "resourceVersion")

	var entry map[string]any
	require.NoError(t, json.Unmarshal([]byte(data["pod.nats-0"]), &entry))
	assert.Equal(t, map[string]any{
		"reason": "kernel upgrade", "requestedBy": "ops", "since": "2025-03-01T12:00:00Z",
		"expiresAt": "2025-03-01T13:00:00Z", "force": true,
	}, entry)
	assert.JSONEq(t, `{"since":"2025-03-01T12:00:00Z"}`, data["pod.nats-1"])

	var status map[string]any
	require.NoError(t, json.Unmarshal([]byte(data["status.nats-0"]), &status))
	assert.Equal(t, "InMaintenance", status["phase"])
	assert.Equal(t, "fenced", status["message"])
}

func TestDecodeDataRejects(t *testing.T) {
	tests := []struct {
		name string
		data map[string]string
		want string // part of the message
	}{
		{"unknown prefix", map[string]string{"node.nats-0": `{}`}, `"node.nats-0": unknown key`},
		{"bare key", map[string]string{"pod": `{}`}, `"pod": unknown key`},
		{"empty pod name", map[string]string{"pod.": `{}`}, `"pod.": empty name`},
		{"empty dc name", map[string]string{"dc.": `{}`}, `"dc.": empty name`},
		{"empty status name", map[string]string{"status.": `{"phase":"Active"}`}, `"status.": empty pod name`},
		{"not json", map[string]string{"pod.nats-0": `reason: x`}, `"pod.nats-0"`},
		{"empty value", map[string]string{"dc.east": ``}, `"dc.east"`},
		{"wrong type", map[string]string{"pod.nats-0": `{"force":"yes"}`}, `"pod.nats-0"`},
		{"unknown field", map[string]string{"pod.nats-0": `{"reson":"typo"}`}, `unknown field "reson"`},
		{"trailing value", map[string]string{"pod.nats-0": `{} {}`}, "trailing data"},
		{"trailing garbage", map[string]string{"pod.nats-0": `{}}`}, "trailing data"},
		{"a key twice", map[string]string{"pod.nats-0": `{"force":false,"reason":"r","force":true}`}, `key "force" given twice`},
		{"a key twice deeper", map[string]string{
			"status.nats-0": `{"phase":"InMaintenance","dark":[{"kind":"stream","group":"A","group":"B","peers":["nats-0"]}]}`,
		}, `key "group" given twice`},
		{"a key in another case", map[string]string{"pod.nats-0": `{"FORCE":true,"reason":"r"}`}, `key "FORCE": the field is "force"`},
		{"unknown phase", map[string]string{"status.nats-0": `{"phase":"Sleeping"}`}, `unknown phase "Sleeping"`},
		{"missing phase", map[string]string{"status.nats-0": `{}`}, `unknown phase ""`},
		{"first bad key reported", map[string]string{"pod.b": `x`, "pod.a": `y`, "pod.c": `{}`}, `"pod.a"`},
		// What Data would refuse to write does not decode either: the
		// document is acted on and written back whole, or not at all.
		{"no ConfigMap key", map[string]string{"dc.east dc": `{}`}, "letters, digits"},
		{"pod name no DNS label", map[string]string{"pod.Nats_0": `{}`}, "not a DNS-1123 label"},
		{"dc named dot dot", map[string]string{"dc...": `{}`}, `invalid dc name ".."`},
		{"status named dot", map[string]string{"status..": `{"phase":"Active"}`}, `invalid pod name "."`},
		{"expires before it began", map[string]string{
			"pod.nats-0": `{"since":"2025-03-01T12:00:00Z","expiresAt":"2025-03-01T11:00:00Z"}`,
		}, "expiresAt 2025-03-01T11:00:00Z is before since 2025-03-01T12:00:00Z"},
		{"dark group of no known kind", map[string]string{
			"status.nats-0": `{"phase":"InMaintenance","dark":[{"kind":"queue","group":"q","peers":["nats-0"]}]}`,
		}, `dark: unknown group kind "queue"`},
		{"dark group without members", map[string]string{
			"status.nats-0": `{"phase":"InMaintenance","dark":[{"kind":"stream","group":"ORDERS","peers":[]}]}`,
		}, "dark: stream ORDERS has no members"},
		{"status names no entry", map[string]string{"status.nats-0": `{"phase":"Fencing","entry":"node.x"}`}, `entry "node.x"`},
		{"status names a bad pod entry", map[string]string{"status.nats-0": `{"phase":"Fencing","entry":"pod.X"}`}, `entry "pod.X"`},
		{"evacuated not account/stream", map[string]string{"status.nats-0": `{"phase":"InMaintenance","evacuated":["ORDERS"]}`}, `"ORDERS": not <account>/<name>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DecodeData(tt.data, "1")
			require.Error(t, err)
			assert.Nil(t, d)
			assert.Equal(t, EInvalid, ErrorCode(err))
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestDecodeDataTolerates(t *testing.T) {
	d, err := DecodeData(map[string]string{
		"pod.nats-0":    " {\"since\":\"2025-03-01T12:00:00Z\"}\n",
		"status.nats-0": `{"phase":"Active","observedAt":"2025-03-01T12:00:00Z","phaseSince":"2025-03-01T12:00:00Z"}`,
	}, "42")
	require.NoError(t, err)
	assert.Equal(t, "42", d.ResourceVersion)
	assert.Equal(t, Entry{Since: docT0}, d.Pods["nats-0"])
	assert.Equal(t, PhaseActive, d.Status["nats-0"].Phase)

	d, err = DecodeData(nil, "")
	require.NoError(t, err)
	assert.Equal(t, NewDocument(), d)
}

func TestDocumentDataRejectsBadNames(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Document)
	}{
		{"empty pod", func(d *Document) { d.Pods[""] = Entry{} }},
		{"empty dc", func(d *Document) { d.DCs[""] = Entry{} }},
		{"empty status", func(d *Document) { d.Status[""] = Status{Phase: PhaseActive} }},
		{"slash", func(d *Document) { d.Pods["a/b"] = Entry{} }},
		{"space", func(d *Document) { d.DCs["east dc"] = Entry{} }},
		{"too long", func(d *Document) { d.Pods[strings.Repeat("a", 250)] = Entry{} }},
		{"pod name no DNS label", func(d *Document) { d.Pods["Nats_0"] = Entry{} }},
		{"expires before it began", func(d *Document) { d.Pods["nats-0"] = Entry{Since: docT0, ExpiresAt: docTime(-time.Second)} }},
		{"status without phase", func(d *Document) { d.Status["nats-0"] = Status{} }},
		{"status names no entry", func(d *Document) { d.Status["nats-0"] = Status{Phase: PhaseFencing, Entry: "east"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDocument()
			tt.edit(d)
			data, err := d.Data()
			require.Error(t, err)
			assert.Nil(t, data)
			assert.Equal(t, EInvalid, ErrorCode(err))
		})
	}
	// Names NATS allows for clusters but DNS does not still make valid keys,
	// and so do NATS server names in statuses.
	d := NewDocument()
	d.DCs["DC_East.1"] = Entry{Since: docT0}
	d.Status["NATS_A"] = Status{Phase: PhaseHandingOff, Entry: "dc.DC_East.1", Evacuated: []string{"APP/ORDERS"}}
	data, err := d.Data()
	require.NoError(t, err)
	assert.Contains(t, data, "dc.DC_East.1")
	got, err := DecodeData(data, "1")
	require.NoError(t, err)
	assert.Equal(t, d.Status["NATS_A"], got.Status["NATS_A"])
}

func TestDocumentClone(t *testing.T) {
	orig := docSample()
	want := docSample()
	c := orig.Clone()
	require.Equal(t, want, c)

	*c.Pods["nats-0"].ExpiresAt = docT0.Add(99 * time.Hour)
	c.Pods["nats-9"] = Entry{}
	delete(c.DCs, "east")
	c.Status["nats-0"] = Status{Phase: PhaseActive}
	c.ResourceVersion = "8"
	assert.Equal(t, want, orig)

	assert.Nil(t, (*Document)(nil).Clone())
	assert.Equal(t, NewDocument(), (&Document{}).Clone())
}

func TestDocumentDesired(t *testing.T) {
	d := NewDocument()
	d.Pods["nats-0"] = Entry{Reason: "pod", Since: docT0}
	d.Pods["nats-1"] = Entry{Reason: "pod expiring", Since: docT0, ExpiresAt: docTime(time.Hour)}
	d.Pods["nats-2"] = Entry{Reason: "pod expiring", Since: docT0, ExpiresAt: docTime(time.Hour)}
	d.DCs["east"] = Entry{Reason: "dc", Since: docT0}
	d.DCs["west"] = Entry{Reason: "dc expiring", Since: docT0, ExpiresAt: docTime(time.Hour)}

	tests := []struct {
		name       string
		pod, dc    string
		now        time.Time
		wantOK     bool
		wantSource string
		wantReason string
	}{
		{"pod entry", "nats-0", "", docT0, true, "pod", "pod"},
		{"pod wins over dc", "nats-0", "east", docT0, true, "pod", "pod"},
		{"pod before expiry", "nats-1", "", docT0.Add(time.Hour - time.Nanosecond), true, "pod", "pod expiring"},
		{"pod at expiry", "nats-1", "", docT0.Add(time.Hour), false, "", ""},
		{"expired pod falls back to dc", "nats-2", "east", docT0.Add(2 * time.Hour), true, "dc", "dc"},
		{"dc entry", "nats-5", "east", docT0, true, "dc", "dc"},
		{"dc before expiry", "nats-5", "west", docT0.Add(time.Minute), true, "dc", "dc expiring"},
		{"dc expired", "nats-5", "west", docT0.Add(time.Hour), false, "", ""},
		{"other dc", "nats-5", "north", docT0, false, "", ""},
		{"dc is exact, not a prefix", "nats-5", "eas", docT0, false, "", ""},
		{"no dc", "nats-5", "", docT0, false, "", ""},
		{"unknown pod", "nats-9", "", docT0, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, source, ok := d.Desired(tt.pod, tt.dc, tt.now)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.wantSource, source)
			assert.Equal(t, tt.wantReason, e.Reason)
		})
	}

	// The returned entry shares no pointer with the document.
	e, _, ok := d.Desired("nats-1", "", docT0)
	require.True(t, ok)
	*e.ExpiresAt = docT0
	assert.Equal(t, docT0.Add(time.Hour), *d.Pods["nats-1"].ExpiresAt)
}

func TestDocumentForcedFence(t *testing.T) {
	d := NewDocument()
	d.Pods["own-forced"] = Entry{Since: docT0, Force: true}
	d.Pods["own-plain"] = Entry{Since: docT0}
	d.Pods["own-drain"] = Entry{Since: docT0, Mode: ModeDrain}
	d.Pods["own-forced-expiring"] = Entry{Since: docT0, Force: true, ExpiresAt: docTime(time.Hour)}
	d.DCs["forced"] = Entry{Since: docT0, Force: true}
	d.DCs["forced-drain"] = Entry{Since: docT0, Force: true, Mode: ModeDrain}
	d.DCs["plain"] = Entry{Since: docT0}
	d.DCs["forced-expiring"] = Entry{Since: docT0, Force: true, ExpiresAt: docTime(time.Hour)}
	later := docT0.Add(2 * time.Hour)
	tests := []struct {
		name    string
		pod, dc string
		now     time.Time
		want    bool
	}{
		{"own entry forced", "own-forced", "", docT0, true},
		{"own entry plain, no dc entry", "own-plain", "", docT0, false},
		{"own entry plain, dc forced", "own-plain", "forced", docT0, true},
		{"own entry plain, dc plain", "own-plain", "plain", docT0, false},
		{"own entry plain, dc forced drain", "own-plain", "forced-drain", docT0, false},
		{"own drain, dc forced fence", "own-drain", "forced", docT0, false},
		{"own forced entry expired", "own-forced-expiring", "", later, false},
		{"dc forced entry expired", "own-plain", "forced-expiring", later, false},
		{"no own entry, dc forced", "nats-9", "forced", docT0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, d.ForcedFence(tt.pod, tt.dc, tt.now))
		})
	}
}

func TestDocumentExpire(t *testing.T) {
	build := func() *Document {
		d := NewDocument()
		d.Pods["forever"] = Entry{Since: docT0}
		d.Pods["one-hour"] = Entry{Since: docT0, ExpiresAt: docTime(time.Hour)}
		d.DCs["two-hours"] = Entry{Since: docT0, ExpiresAt: docTime(2 * time.Hour)}
		d.Status["one-hour"] = Status{Phase: PhaseInMaintenance}
		return d
	}
	tests := []struct {
		name        string
		now         time.Time
		wantChanged bool
		wantPods    []string
		wantDCs     []string
	}{
		{"nothing expired", docT0, false, []string{"forever", "one-hour"}, []string{"two-hours"}},
		{"just before", docT0.Add(time.Hour - time.Nanosecond), false, []string{"forever", "one-hour"}, []string{"two-hours"}},
		{"pod expires", docT0.Add(time.Hour), true, []string{"forever"}, []string{"two-hours"}},
		{"pod and dc expire", docT0.Add(3 * time.Hour), true, []string{"forever"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := build()
			assert.Equal(t, tt.wantChanged, d.Expire(tt.now))
			assert.ElementsMatch(t, tt.wantPods, docKeys(d.Pods))
			assert.ElementsMatch(t, tt.wantDCs, docKeys(d.DCs))
			assert.Contains(t, d.Status, "one-hour", "statuses are the reconciler's to remove")
			assert.False(t, d.Expire(tt.now), "a second pass changes nothing")
		})
	}
}

func docKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"nats-0", true},
		{"a", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Nats-0", false},
		{"nats_0", false},
		{"nats.0", false},
		{"-nats", false},
		{"nats-", false},
		{"nats 0", false},
		{"nats/0", false},
		{"nats-0\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.name)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, EInvalid, ErrorCode(err))
			assert.Contains(t, err.Error(), "DNS-1123")
		})
	}
}

func TestValidDCName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"dc1", true},
		{"DC_1.east-2", true},
		{strings.Repeat("a", 250), true},
		{strings.Repeat("a", 251), false}, // "dc." + 251 is over 253
		{"", false},
		{".", false},
		{"..", false},
		{"dc 1", false},
		{"dc/1", false},
		{"dc:1", false},
		{"dc1\n", false},
		{"zoné", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidDCName(tt.name)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, EInvalid, ErrorCode(err))
		})
	}
}

func TestHeldAtBoot(t *testing.T) {
	now := docT0.Add(time.Hour)
	past := docT0
	tests := []struct {
		name    string
		edit    func(d *Document)
		dcLabel string
		want    string // "" for not held
	}{
		{name: "nothing asked", edit: func(*Document) {}},
		{name: "its own entry", edit: func(d *Document) { d.Pods["nats-1"] = Entry{Since: docT0} }, want: "pod.nats-1"},
		{name: "its own entry, expired", edit: func(d *Document) { d.Pods["nats-1"] = Entry{Since: docT0, ExpiresAt: &past} }},
		{name: "its dc label's entry", dcLabel: "zone-a",
			edit: func(d *Document) { d.DCs["zone-a"] = Entry{Since: docT0} }, want: "dc.zone-a"},
		{name: "a dc by cluster name, as its reconciler reported", edit: func(d *Document) {
			d.DCs["dc1"] = Entry{Since: docT0}
			d.Status["nats-1"] = Status{Phase: PhaseInMaintenance, Entry: "dc.dc1"}
		}, want: "dc.dc1"},
		{name: "on its way in when it went", edit: func(d *Document) {
			d.DCs["dc1"] = Entry{Since: docT0}
			d.Status["nats-1"] = Status{Phase: PhaseFencing, Entry: "dc.dc1"}
		}, want: "dc.dc1"},
		{name: "the reported dc entry is gone", edit: func(d *Document) {
			d.Status["nats-1"] = Status{Phase: PhaseInMaintenance, Entry: "dc.dc1"}
		}},
		{name: "on its way out", edit: func(d *Document) {
			d.DCs["dc1"] = Entry{Since: docT0}
			d.Status["nats-1"] = Status{Phase: PhaseCatchingUp, Entry: "dc.dc1"}
		}},
		{name: "another pod's entry", edit: func(d *Document) { d.Pods["nats-2"] = Entry{Since: docT0} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDocument()
			tt.edit(d)
			key, ok := d.HeldAtBoot("nats-1", tt.dcLabel, now)
			assert.Equal(t, tt.want != "", ok)
			assert.Equal(t, tt.want, key)
		})
	}
	var nilDoc *Document
	_, ok := nilDoc.HeldAtBoot("nats-1", "", now)
	assert.False(t, ok)
}
