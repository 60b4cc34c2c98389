package newman

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestsCountsEveryFolder(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(Collection)), 0o755))
	write := func(body string) {
		require.NoError(t, os.WriteFile(filepath.Join(root, Collection), []byte(body), 0o644))
	}

	write(`{"item":[{"request":{}},{"item":[{"request":{}},{"item":[{"request":{}}]}]},{"name":"empty folder","item":[]}]}`)
	n, err := Requests(root)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "requests at every depth, folders not counted")

	write(`{"item":[{"item":"not a list"}]}`)
	_, err = Requests(root)
	assert.ErrorContains(t, err, "an item")

	_, err = Requests(t.TempDir())
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRequestsOfTheProjectsCollection(t *testing.T) {
	n, err := Requests(filepath.Join("..", ".."))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 44, "the collection covers every route with its error cases")
}
