package broker

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/oklog/ulid/v2"
)

// ids hands out the ULIDs of the memory broker's publications, a Publish's
// worth at a time: one lock per Publish, not an id source read (ulid's
// process-wide monotonic source: a lock and an io.Reader call) and two
// allocations per notification.
//
// Ids are monotonic, as ulid's monotonic source makes them: within one
// millisecond each id is the previous one plus one, and a new millisecond
// starts from fresh random entropy. The id's time is the time it was asked
// for (the notification's timestamp), except when the clock reads earlier
// than the last id's time (it went back, or a test's clock is before 1970):
// then the ids go on from the last one, so they never repeat.
type ids struct {
	mu  sync.Mutex
	ms  uint64 // time of the last id handed out
	hi  uint16 // its entropy: 80 bits, hi the top 16
	lo  uint64
	rng *rand.ChaCha8 // under mu
}

func newIDs() *ids {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(fmt.Sprintf("broker: no randomness for ids: %v", err))
	}
	return &ids{rng: rand.NewChaCha8(seed)}
}

// idSeq is a run of consecutive ids; next returns them in order.
type idSeq struct {
	ms uint64
	hi uint16
	lo uint64
}

// reserve takes k (at least 1) consecutive ids at time ms.
func (g *ids) reserve(ms uint64, k int) idSeq {
	g.mu.Lock()
	defer g.mu.Unlock()
	var first idSeq
	if ms > g.ms {
		// The top entropy bit starts clear: 2^79 ids fit in this
		// millisecond before the entropy could overflow.
		first = idSeq{ms: ms, hi: uint16(g.rng.Uint64()) >> 1, lo: g.rng.Uint64()}
	} else {
		first = idSeq{ms: g.ms, hi: g.hi, lo: g.lo}
		first.step()
	}
	last := first
	last.add(uint64(k - 1))
	g.ms, g.hi, g.lo = last.ms, last.hi, last.lo
	return first
}

// step moves s to the next id: entropy plus one, and on the (practically
// impossible) overflow of its 80 bits, the next millisecond.
func (s *idSeq) step() { s.add(1) }

func (s *idSeq) add(d uint64) {
	lo := s.lo + d
	if lo < s.lo {
		s.hi++
		if s.hi == 0 {
			s.ms++
		}
	}
	s.lo = lo
}

// next returns the current id and steps past it.
func (s *idSeq) next() ulid.ULID {
	var u ulid.ULID
	// The 48-bit time, then the 80-bit entropy, big-endian (the ULID
	// binary layout).
	u[0], u[1] = byte(s.ms>>40), byte(s.ms>>32)
	binary.BigEndian.PutUint32(u[2:6], uint32(s.ms))
	binary.BigEndian.PutUint16(u[6:8], s.hi)
	binary.BigEndian.PutUint64(u[8:16], s.lo)
	s.step()
	return u
}

// IDSource hands out ULIDs as the memory broker does (see ids): a run of
// consecutive ids for one publish under one lock, for brokers that name
// publications themselves (NATS), in place of ulid.Make's process-wide
// locked entropy reader per id. Ids are monotonic per source; two sources
// (two nodes) start every millisecond at random 80-bit entropy, as
// ulid.Make does, so they do not meet.
type IDSource struct{ g *ids }

// NewIDSource returns a source seeded from crypto/rand.
func NewIDSource() *IDSource { return &IDSource{newIDs()} }

// Reserve returns k (at least 1) consecutive ids at time ms (epoch
// milliseconds; a time before 1970 counts as 0).
func (s *IDSource) Reserve(ms int64, k int) IDRun {
	return IDRun{s.g.reserve(uint64(max(ms, 0)), k)}
}

// IDRun is a run of ids from Reserve.
type IDRun struct{ s idSeq }

// Next returns the run's next id; call it at most k times.
func (r *IDRun) Next() ulid.ULID { return r.s.next() }
