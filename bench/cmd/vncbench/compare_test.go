package main

import (
	"slices"
	"testing"

	"vncedge/bench/loadgen"
)

// TestMatrix checks that every cell a contender declares is in the full matrix
// (else it would silently not run) and that the quick matrix has a 256 KiB
// down cell.
func TestMatrix(t *testing.T) {
	full := matrix(false)
	for _, name := range loadgen.AllContenders {
		for _, d := range loadgen.DeclaredCells(name) {
			if !slices.Contains(full, cell{d.Workload, d.Size, d.N}) {
				t.Errorf("%s declares %+v, not in the matrix", name, d)
			}
		}
	}
	if !slices.Contains(matrix(true), cell{loadgen.Down, 256 << 10, 64}) {
		t.Error("the quick matrix has no 256 KiB down cell")
	}
}
