package events

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRanges(t *testing.T) {
	for _, ids := range [][]int{nil, {1}, {1, 2, 3}, {1, 3, 4, 5, 9}, {2, 4, 6}} {
		r := Ranges(ids)
		back, err := ParseRanges(r)
		require.NoError(t, err)
		assert.Equal(t, ids, back, "%v", r)
	}
	assert.Equal(t, []string{"1", "3-5", "9"}, Ranges([]int{1, 3, 4, 5, 9}))
	for _, bad := range []string{"x", "1-x", "5-3"} {
		_, err := ParseRanges([]string{bad})
		assert.Error(t, err, bad)
	}
}

func TestRead(t *testing.T) {
	in := `{"event":"connected","server":"nats-0"}
kubectl: a line that is not an event

[1,2]
{"event":"summary","acked":2,"ackedIDs":["1-2"]}`
	var got []Event
	require.NoError(t, Read(strings.NewReader(in), func(e Event) { got = append(got, e) }))
	assert.Equal(t, []Event{
		{Event: "connected", Server: "nats-0"},
		{Event: "summary", Acked: 2, AckedIDs: []string{"1-2"}},
	}, got)

	got = nil
	long := `{"event":"gap"}` + "\n" + `{"event":"summary","ackedIDs":["` + strings.Repeat("1", maxLine) + `"]}` + "\n" + `{"event":"late"}`
	assert.Error(t, Read(strings.NewReader(long), func(e Event) { got = append(got, e) }), "a line over the limit")
	assert.Equal(t, []Event{{Event: "gap"}}, got)
}
