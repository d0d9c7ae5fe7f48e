package proxy

import "testing"

func TestSessionStateString(t *testing.T) {
	for st, want := range map[sessionState]string{
		stUpgrade: "upgrade", stDialing: "dialing", stRelay: "relay",
		stClosing: "closing", stClosed: "closed", stClosed + 1: "sessionState(5)",
	} {
		if got := st.String(); got != want {
			t.Errorf("sessionState %d: String() = %q, want %q", uint8(st), got, want)
		}
	}
}
