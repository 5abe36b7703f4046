package server

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// A conn is kept for every connection, most of them idle, so its size is
// much of the relay's memory per idle connection (bench S3). What few
// connections need (a parked request, a remote seat) hangs off pointers;
// this pins the size class, so that a field added grows it on purpose
// rather than by accident.
func TestConnFitsItsSizeClass(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(conn{}), uintptr(320),
		"conn grew past the 320-byte size class: move what few connections need behind a pointer, or pack the flags")
}
