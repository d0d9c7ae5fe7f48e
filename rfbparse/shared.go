package rfbparse

import "sync/atomic"

// SharedKeys is the modifier state of one desktop as its VNC server keeps
// it: a server has one keyboard for all its clients, so a modifier held
// through one connection applies to keys typed through every other one
// (Ctrl held in one tab, o typed in another, is Ctrl+O on the desktop).
// Every Stream relaying input to the same server shares one SharedKeys;
// each publishes the modifier keys it holds, and judges its key presses
// against the union (fail closed).
//
// It is the one piece of Stream state read and written from several event
// loops: per modifier key a count of the Streams holding it, in atomics.
// Streams update it only when their own modifier set changes (a modifier
// press or release), and read it only to judge a key press.
type SharedKeys struct {
	n [16]atomic.Int32 // per modifier key bit (see modKey): Streams holding it
}

// others returns the modifier keys held by Streams other than one holding own.
func (k *SharedKeys) others(own uint16) uint16 {
	var m uint16
	for b := range k.n {
		c := k.n[b].Load()
		if own&(1<<b) != 0 {
			c--
		}
		if c > 0 {
			m |= 1 << b
		}
	}
	return m
}

// update moves one Stream's contribution from old to now.
func (k *SharedKeys) update(old, now uint16) {
	for ch := old ^ now; ch != 0; ch &= ch - 1 {
		b := trailingZeros16(ch)
		if now&(1<<b) != 0 {
			k.n[b].Add(1)
		} else {
			k.n[b].Add(-1)
		}
	}
}

func trailingZeros16(x uint16) int {
	n := 0
	for x&1 == 0 {
		x >>= 1
		n++
	}
	return n
}

// Share makes s judge its key presses against the modifiers every Stream
// sharing k holds, and publish its own there. Call it before any input.
func (s *Stream) Share(k *SharedKeys) {
	s.shared = k
	k.update(0, s.mods)
	s.published = s.mods
}

// Unshare withdraws s's modifiers from its SharedKeys (the connection is
// gone; the server released its keys, or vncedge did). Idempotent.
func (s *Stream) Unshare() {
	if s.shared != nil {
		s.shared.update(s.published, 0)
		s.shared, s.published = nil, 0
	}
}

// publish keeps s's contribution to its SharedKeys equal to s.mods.
func (s *Stream) publish() {
	if s.shared != nil && s.published != s.mods {
		s.shared.update(s.published, s.mods)
		s.published = s.mods
	}
}

// judgeGroups is the modifier groups a key press is judged under: s's own
// and, with a SharedKeys, those held through the desktop's other connections.
func (s *Stream) judgeGroups() Modifier {
	if s.shared == nil {
		return s.grp
	}
	return groups(s.mods | s.shared.others(s.mods))
}
