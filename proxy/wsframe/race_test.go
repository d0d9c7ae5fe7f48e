//go:build race

package wsframe

func init() { raceEnabled = true }
