package cdp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// maxMessage bounds one incoming DevTools message that vncedge keeps: a
// selection of MaxText is at most a few MB of JSON. A longer answer fails its
// call (errMessageTooLarge) and is discarded as it arrives, never held.
const maxMessage = 8 << 20

// controlWriteTimeout bounds the write of a pong or close frame.
const controlWriteTimeout = 2 * time.Second

// codeSessionNotFound is the DevTools error code for a sessionId the browser
// no longer knows (the target was closed or detached).
const codeSessionNotFound = -32001

// errConnLost is wrapped by every error caused by the WebSocket breaking.
var errConnLost = errors.New("devtools connection lost")

// protocolError is an error answer from the browser. Its message comes from
// the browser (for example "No target with given id found"), never from the
// page, so it is safe to pass on.
type protocolError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *protocolError) Error() string {
	msg := e.Message
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Sprintf("devtools error %d: %s", e.Code, msg)
}

// request is one outgoing DevTools command.
type request struct {
	ID        int64  `json:"id"`
	Method    string `json:"method"`
	Params    any    `json:"params,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

// message is any incoming DevTools message: a response (ID set) or an event
// (Method set).
type message struct {
	tooLarge  bool            // set by readLoop: the answer passed maxMessage and was discarded
	ID        int64           `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Result    json.RawMessage `json:"result"`
	Error     *protocolError  `json:"error"`
	Params    json.RawMessage `json:"params"`
}

// detachedParams is the payload of the Target.detachedFromTarget event.
type detachedParams struct {
	SessionID string `json:"sessionId"`
	TargetID  string `json:"targetId"`
}

// conn is one browser-level DevTools WebSocket. Commands are multiplexed by
// message id: any number of goroutines may call concurrently, one reader
// goroutine dispatches the answers. Page sessions are flattened onto the
// same socket (Target.attachToTarget with flatten), one per target, cached.
type conn struct {
	nc  net.Conn
	src io.Reader // nc behind a bufio.Reader (possibly the handshake's)

	wmu sync.Mutex // serialises whole frames onto nc

	nextID      atomic.Int64
	callTimeout time.Duration // bounds the shared attach

	mu        sync.Mutex
	pending   map[int64]chan message
	sessions  map[string]string // targetId → sessionId
	attaching map[string]*attachCall
	err       error // set once, before done is closed

	done chan struct{} // closed when the connection is dead
}

// attachCall lets concurrent callers share one Target.attachToTarget.
type attachCall struct {
	done      chan struct{}
	sessionID string
	err       error
}

func newConn(nc net.Conn, br *bufio.Reader, callTimeout time.Duration) *conn {
	if br == nil {
		br = bufio.NewReaderSize(nc, 32<<10)
	}
	cn := &conn{
		callTimeout: callTimeout,
		nc:          nc,
		src:         br,
		pending:     make(map[int64]chan message),
		sessions:    make(map[string]string),
		attaching:   make(map[string]*attachCall),
		done:        make(chan struct{}),
	}
	go cn.readLoop()
	return cn
}

// dead reports whether the connection has failed or been closed.
func (cn *conn) dead() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

// fail marks the connection dead with err (first error wins) and closes the
// socket; every waiting call returns.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	cn.pending = nil
	close(cn.done)
	cn.mu.Unlock()
	cn.nc.Close()
}

// close sends a best-effort close frame, then fails the connection with err.
func (cn *conn) close(err error) {
	if !cn.dead() {
		body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "")
		_ = cn.writeFrame(time.Now().Add(controlWriteTimeout), ws.NewCloseFrame(body))
	}
	cn.fail(err)
}

// deadErr is the error calls report once the connection is dead.
func (cn *conn) deadErr() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// writeFrame masks f and writes it as one unit.
func (cn *conn) writeFrame(deadline time.Time, f ws.Frame) error {
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, ws.MaskFrameInPlace(f)); err != nil {
		return err
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.nc.SetWriteDeadline(deadline)
	_, err := cn.nc.Write(buf.Bytes())
	return err
}

// controlWriter lets wsutil answer pings and closes without interleaving
// with command frames: each control answer is a single Write.
type controlWriter struct{ cn *conn }

func (w controlWriter) Write(p []byte) (int, error) {
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	_ = w.cn.nc.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	return w.cn.nc.Write(p)
}

// readLoop reads messages until the socket fails, answering control frames
// and dispatching responses and the few events we care about.
func (cn *conn) readLoop() {
	rd := &wsutil.Reader{
		Source: cn.src,
		State:  ws.StateClientSide,
	}
	control := wsutil.ControlFrameHandler(controlWriter{cn}, ws.StateClientSide)
	rd.OnIntermediate = control
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			cn.fail(fmt.Errorf("%w: %w", errConnLost, err))
			return
		}
		if hdr.OpCode.IsControl() {
			if err := control(hdr, rd); err != nil {
				cn.fail(fmt.Errorf("%w: %w", errConnLost, err))
				return
			}
			continue
		}
		if err := cn.readMessage(rd); err != nil {
			cn.fail(fmt.Errorf("%w: %w", errConnLost, err))
			return
		}
	}
}

// readMessage reads one message from rd and dispatches it. Messages nobody
// waits for (events other than Target.detachedFromTarget, answers to calls
// given up) are discarded as they arrive, from their first bytes; a message
// longer than maxMessage is discarded too, failing its call if it is an
// answer. Only a message that is kept is held whole.
func (cn *conn) readMessage(rd io.Reader) error {
	var head [headSize]byte
	n, err := io.ReadFull(rd, head[:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		cn.dispatch(head[:n]) // all of it
		return nil
	}
	if err != nil {
		return err
	}
	id, method, known := classify(head[:n])
	if known && (method != "" && method != "Target.detachedFromTarget" || id != 0 && !cn.waiting(id)) {
		_, err := io.Copy(io.Discard, rd)
		return err
	}
	// Read in chunks, joined once at the end: a growing buffer would hold
	// up to three times the message while it doubles.
	chunks := [][]byte{head[:n:n]}
	total := n
	for total <= maxMessage {
		c := make([]byte, min(64<<10, maxMessage+1-total))
		k, err := io.ReadFull(rd, c)
		chunks = append(chunks, c[:k])
		total += k
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if total > maxMessage {
		chunks = nil
		if _, err := io.Copy(io.Discard, rd); err != nil {
			return err
		}
		if id != 0 {
			cn.deliver(message{ID: id, tooLarge: true})
		}
		return nil
	}
	cn.dispatch(bytes.Join(chunks, nil))
	return nil
}

// waiting reports whether a call waits for the answer id.
func (cn *conn) waiting(id int64) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.pending[id] != nil
}

// deliver hands m to the call waiting for it, if any.
func (cn *conn) deliver(m message) {
	cn.mu.Lock()
	ch := cn.pending[m.ID]
	delete(cn.pending, m.ID)
	cn.mu.Unlock()
	if ch != nil {
		ch <- m // buffered, never blocks
	}
}

// dispatch routes one message: a response to its waiting call, a detach
// event to the session cache. Anything else is ignored.
func (cn *conn) dispatch(data []byte) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return
	}
	switch {
	case m.ID != 0:
		cn.deliver(m)
	case m.Method == "Target.detachedFromTarget":
		var p detachedParams
		if json.Unmarshal(m.Params, &p) == nil {
			cn.forgetSession(p.TargetID, p.SessionID)
		}
	}
}

// call sends one command (on sessionID, or on the browser when empty) and
// waits for its answer until ctx is done. A nil result discards the answer.
func (cn *conn) call(ctx context.Context, sessionID, method string, params, result any) error {
	id := cn.nextID.Add(1)
	payload, err := json.Marshal(request{ID: id, Method: method, Params: params, SessionID: sessionID})
	if err != nil {
		return fmt.Errorf("%s: encode: %w", method, err)
	}
	ch := make(chan message, 1)
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return fmt.Errorf("%s: %w", method, cn.err)
	}
	cn.pending[id] = ch
	cn.mu.Unlock()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(controlWriteTimeout)
	}
	if err := cn.writeFrame(deadline, ws.NewTextFrame(payload)); err != nil {
		// A failed or partial write leaves the stream unusable.
		cn.fail(fmt.Errorf("%w: write: %w", errConnLost, err))
		return fmt.Errorf("%s: %w", method, cn.deadErr())
	}

	select {
	case m := <-ch:
		if m.tooLarge {
			return fmt.Errorf("%s: %w", method, errMessageTooLarge)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %w", method, m.Error)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decode result: %w", method, err)
			}
		}
		return nil
	case <-cn.done:
		return fmt.Errorf("%s: %w", method, cn.deadErr())
	case <-ctx.Done():
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// attachParams is the payload of Target.attachToTarget.
type attachParams struct {
	TargetID string `json:"targetId"`
	Flatten  bool   `json:"flatten"`
}

// session returns the flattened session for targetID, attaching once and
// caching the sessionId. Concurrent callers share one attach, which runs on
// its own context bounded by the call timeout: a caller that gives up (its
// ctx ends) neither cancels it for the others nor leaves a stray session.
func (cn *conn) session(ctx context.Context, targetID string) (string, error) {
	cn.mu.Lock()
	if sid, ok := cn.sessions[targetID]; ok {
		cn.mu.Unlock()
		return sid, nil
	}
	a := cn.attaching[targetID]
	if a == nil {
		a = &attachCall{done: make(chan struct{})}
		cn.attaching[targetID] = a
		go cn.attach(targetID, a)
	}
	cn.mu.Unlock()
	select {
	case <-a.done:
		return a.sessionID, a.err
	case <-ctx.Done():
		return "", fmt.Errorf("%s: %w", "Target.attachToTarget", ctx.Err())
	}
}

// attach runs one Target.attachToTarget for session.
func (cn *conn) attach(targetID string, a *attachCall) {
	ctx, cancel := context.WithTimeout(context.Background(), cn.callTimeout)
	defer cancel()
	var res struct {
		SessionID string `json:"sessionId"`
	}
	err := cn.call(ctx, "", "Target.attachToTarget", attachParams{TargetID: targetID, Flatten: true}, &res)
	if err == nil && res.SessionID == "" {
		err = fmt.Errorf("%s: no sessionId in answer", "Target.attachToTarget")
	}
	cn.mu.Lock()
	delete(cn.attaching, targetID)
	if err == nil && cn.err == nil {
		cn.sessions[targetID] = res.SessionID
	}
	a.sessionID, a.err = res.SessionID, err
	close(a.done)
	cn.mu.Unlock()
}

// forgetSession drops a cached session, by target, by session or both.
func (cn *conn) forgetSession(targetID, sessionID string) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if targetID != "" {
		if sessionID == "" || cn.sessions[targetID] == sessionID {
			delete(cn.sessions, targetID)
		}
		return
	}
	for t, s := range cn.sessions {
		if s == sessionID {
			delete(cn.sessions, t)
		}
	}
}

// keepSessions drops cached sessions of targets that no longer exist.
func (cn *conn) keepSessions(live map[string]bool) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	for t := range cn.sessions {
		if !live[t] {
			delete(cn.sessions, t)
		}
	}
}

// isSessionGone reports whether err says the page session no longer exists.
func isSessionGone(err error) bool {
	var pe *protocolError
	return errors.As(err, &pe) && pe.Code == codeSessionNotFound
}
