package events

import (
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
