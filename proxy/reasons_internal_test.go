package proxy

import (
	"testing"

	"vncedge/tracing"
)

// TestEndReasons: every end reason has a row; its text is labelled as the
// row says, by a label tracing knows (not other or unknown); and only the
// reasons that send no close frame of ours lack a code.
func TestEndReasons(t *testing.T) {
	noCode := map[endReason]bool{reasonViewerClosed: true, reasonEarlyDataLimit: true,
		reasonUpgradeTimeout: true, reasonProxyProtocol: true}
	for r := range numEndReasons {
		row := endReasons[r]
		if row.text == "" || row.label == "" {
			t.Errorf("end reason %d: no row", r)
			continue
		}
		if row.label == tracing.ReasonOther || row.label == tracing.ReasonUnknown {
			t.Errorf("%s: label %q", row.text, row.label)
		}
		if got := tracing.CloseReasonLabel(row.text); got != row.label {
			t.Errorf("%s: tracing labels it %q, the table %q", row.text, got, row.label)
		}
		if (row.code == 0) != noCode[r] {
			t.Errorf("%s: close code %d", row.text, row.code)
		}
		if row.code != 0 && r < reasonViewerClosed && row.code.IsProtocolReserved() {
			t.Errorf("%s: code %d cannot be sent in a close frame", row.text, row.code)
		}
	}
	if endReasons[reasonViewerWriteFailed].text != endReasons[reasonViewerWriteLost].text {
		t.Error("viewer-write-failed: one text for both codes")
	}
}
