//go:build linux

package transport

// sendEach sends frame to each descriptor once, r.entries per
// io_uring_enter (BenchmarkFanOutFloor), and returns how many sends did
// not take it all.
func (r *uring) sendEach(fds []int, frame []byte) (short int) {
	reqs := make([]sendReq, 0, r.entries)
	for len(fds) > 0 {
		k := min(len(fds), int(r.entries))
		reqs = reqs[:0]
		for _, fd := range fds[:k] {
			reqs = append(reqs, sendReq{fd: fd, b: frame})
		}
		if err := r.send(reqs); err != nil {
			return short + k
		}
		for _, q := range reqs {
			if q.n != len(frame) {
				short++
			}
		}
		fds = fds[k:]
	}
	return short
}
