package demo

import (
	"fmt"
	"image"
	"strings"
)

// The demo desktop, Width×Height pixels, top to bottom:
//
//   - StaticRect: a title line, eight colour bars and a gradient. It never
//     changes: StaticPixel gives every pixel, so a test can match a viewer's
//     canvas exactly.
//   - BandRect: diagonal stripes that move while a viewer is connected.
//     BandPixel gives the band for a frame number; frames repeat every
//     BandPeriod.
//   - CanvasRect: the pointer trail, drawn wherever the pointer moves with a
//     button down (PenColour), on CanvasBackground. Escape clears it.
//   - StatusRect: the last keys typed, the pointer, the viewer count and the
//     start of the last clipboard text a viewer sent.
const (
	Width  = 800
	Height = 600
)

// Regions of the desktop (see the package comment of this file).
var (
	StaticRect = image.Rect(0, 0, Width, 104)
	BandRect   = image.Rect(0, 104, Width, 144)
	CanvasRect = image.Rect(0, 144, Width, 540)
	StatusRect = image.Rect(0, 540, Width, Height)
)

// Title is the text of the first line.
const Title = "vncedge demo - take control, then draw below and type"

// Colours, 0xRRGGBB.
const (
	titleBackground  = 0x1b2430
	titleForeground  = 0xf2f2f2
	CanvasBackground = 0xf7f5ee
	canvasHint       = 0xa8a49a
	statusBackground = 0x1b2430
	statusForeground = 0xe8e8e8
)

// Band geometry: the stripes repeat every bandWavelength pixels and move
// BandStep pixels a frame, so the band repeats every BandPeriod frames.
const (
	BandStep       = 4
	bandWavelength = 64
	BandPeriod     = bandWavelength / BandStep
)

var bars = [8]uint32{0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000}

// staticImage is StaticRect rendered once (its rows are Width wide).
var staticImage = renderStatic()

func renderStatic() []uint32 {
	fb := make([]uint32, Width*StaticRect.Dy())
	fill(fb, Width, image.Rect(0, 0, Width, 24), titleBackground)
	drawText(fb, Width, image.Rect(0, 0, Width, 24), 8, 5, 2, titleForeground, Title)
	for i, c := range bars {
		fill(fb, Width, image.Rect(i*Width/8, 24, (i+1)*Width/8, 84), c)
	}
	for y := 84; y < StaticRect.Max.Y; y++ {
		for x := range Width {
			r := uint32(x * 255 / (Width - 1))
			fb[y*Width+x] = r<<16 | (255-r)<<8 | uint32((y-84)*12)
		}
	}
	return fb
}

// StaticPixel returns the colour (0xRRGGBB) of a pixel in StaticRect.
func StaticPixel(x, y int) uint32 {
	if !(image.Point{x, y}).In(StaticRect) {
		panic(fmt.Sprintf("demo: StaticPixel(%d, %d) outside %v", x, y, StaticRect))
	}
	return staticImage[y*Width+x]
}

// BandPixel returns the colour (0xRRGGBB) of a pixel in BandRect when the
// server is at the given frame.
func BandPixel(frame, x, y int) uint32 {
	frame %= BandPeriod
	if frame < 0 {
		frame += BandPeriod
	}
	v := uint32((x + y - BandRect.Min.Y + frame*BandStep) % bandWavelength)
	c := v * 4
	return c<<16 | 0x40<<8 | (0xff - c)
}

// PenColour is the colour of the trail drawn with the given button mask
// (bit 0 left, bit 1 middle, bit 2 right; the lowest set bit wins), and
// false when no button is down.
func PenColour(mask uint8) (uint32, bool) {
	switch {
	case mask&1 != 0:
		return 0x1f4fd0, true
	case mask&2 != 0:
		return 0x1f9f3f, true
	case mask&4 != 0:
		return 0xd01f1f, true
	}
	return 0, false
}

// fill paints r (clipped to the framebuffer) with c.
func fill(fb []uint32, w int, r image.Rectangle, c uint32) {
	r = r.Intersect(image.Rect(0, 0, w, len(fb)/w))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := fb[y*w+r.Min.X : y*w+r.Max.X]
		for i := range row {
			row[i] = c
		}
	}
}

// drawBand renders the band at frame into a Width×Height framebuffer.
func drawBand(fb []uint32, frame int) {
	for y := BandRect.Min.Y; y < BandRect.Max.Y; y++ {
		for x := range Width {
			fb[y*Width+x] = BandPixel(frame, x, y)
		}
	}
}

// canvasHintText is drawn in the canvas's top-left corner when it is cleared.
const canvasHintText = "draw here with a mouse button held; Escape clears"

func clearCanvas(fb []uint32) {
	fill(fb, Width, CanvasRect, CanvasBackground)
	drawText(fb, Width, CanvasRect, CanvasRect.Min.X+8, CanvasRect.Min.Y+6, 1, canvasHint, canvasHintText)
}

// brush is the half-size of the square drawn at each trail point.
const brush = 1

// drawLine draws the trail from (x0, y0) to (x1, y1) in CanvasRect and
// returns the rectangle it touched.
func drawLine(fb []uint32, x0, y0, x1, y1 int, c uint32) image.Rectangle {
	n := max(abs(x1-x0), abs(y1-y0))
	var touched image.Rectangle
	for i := 0; i <= n; i++ {
		x, y := x0, y0
		if n > 0 {
			x, y = x0+(x1-x0)*i/n, y0+(y1-y0)*i/n
		}
		r := image.Rect(x-brush, y-brush, x+brush+1, y+brush+1).Intersect(CanvasRect)
		fill(fb, Width, r, c)
		touched = touched.Union(r)
	}
	return touched
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// status is what the status lines show.
type status struct {
	keys            []string
	x, y            int
	buttons         uint8
	viewers         int
	clipboard       string
	clipboardLength int
}

// statusLines renders the two status lines as text.
func (s *status) lines() (string, string) {
	const maxCols = (Width - 16) / (advance * 2)
	keys := "keys: " + strings.Join(s.keys, "")
	if len(keys) > maxCols {
		keys = "keys: ..." + keys[len(keys)-(maxCols-9):]
	}
	info := fmt.Sprintf("pointer %d,%d buttons %d  viewers %d", s.x, s.y, s.buttons, s.viewers)
	if s.clipboardLength > 0 {
		clip := s.clipboard
		if room := maxCols - len(info) - 8; len(clip) > room {
			clip = clip[:max(room-3, 0)] + "..."
		}
		info += "  clip: " + clip
	}
	return keys, info
}

// The status lines' rectangles.
var (
	keysLineRect = image.Rect(0, StatusRect.Min.Y, Width, StatusRect.Min.Y+lineHeight*2+4)
	infoLineRect = image.Rect(0, keysLineRect.Max.Y, Width, StatusRect.Max.Y)
)

// drawStatus redraws the status lines that changed since drawn (the
// previously drawn text) and returns the rectangles it touched: only as
// wide as the longer of the old and new text.
func drawStatus(fb []uint32, s *status, drawn *[2]string) []image.Rectangle {
	l1, l2 := s.lines()
	var touched []image.Rectangle
	for i, line := range [2]string{l1, l2} {
		r := keysLineRect
		if i == 1 {
			r = infoLineRect
		}
		if drawn != nil && drawn[i] == line {
			continue
		}
		old := 0
		if drawn != nil {
			old = len(drawn[i])
		}
		fill(fb, Width, r, statusBackground)
		drawText(fb, Width, r, 8, r.Min.Y+6, 2, statusForeground, line)
		w := min(Width, 8+max(old, len([]rune(line)))*advance*2)
		touched = append(touched, image.Rect(r.Min.X, r.Min.Y, w, r.Max.Y))
		if drawn != nil {
			drawn[i] = line
		}
	}
	return touched
}

// keyLabel is how a keysym appears in the key line: printable ASCII as the
// character, a few named keys in angle brackets, others as <U+XXXX> or <#x>.
func keyLabel(keysym uint32) string {
	if keysym >= 0x20 && keysym <= 0x7e {
		if keysym == ' ' {
			return "_"
		}
		return string(rune(keysym))
	}
	if name, ok := keyNames[keysym]; ok {
		return "<" + name + ">"
	}
	if keysym >= 0xa0 && keysym <= 0xff {
		return fmt.Sprintf("<U+%04X>", keysym)
	}
	if keysym&0xff000000 == 0x01000000 {
		return fmt.Sprintf("<U+%04X>", keysym&0xffffff)
	}
	return fmt.Sprintf("<%#x>", keysym)
}

var keyNames = map[uint32]string{
	0xff08: "BS", 0xff09: "Tab", 0xff0d: "Ret", 0xff1b: "Esc", 0xffff: "Del",
	0xff50: "Home", 0xff51: "Left", 0xff52: "Up", 0xff53: "Right", 0xff54: "Down",
	0xff55: "PgUp", 0xff56: "PgDn", 0xff57: "End", 0xff63: "Ins",
	0xffe1: "Shift", 0xffe2: "Shift", 0xffe3: "Ctrl", 0xffe4: "Ctrl",
	0xffe7: "Meta", 0xffe8: "Meta", 0xffe9: "Alt", 0xffea: "Alt",
	0xffeb: "Super", 0xffec: "Super", 0xff7e: "AltGr",
}
