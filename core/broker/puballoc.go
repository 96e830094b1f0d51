package broker

// newPublication returns a Publication and an empty buffer of capacity
// size for its Data, for notifications up to 928 bytes in one allocation:
// the Publication and its bytes live and die together (Data is the
// Publication's, and its ID and Channel are read from it), so one object
// for both is one malloc and one object for the GC to mark instead of two.
// Each struct below is a Go size class (96 bytes of Publication plus the
// buffer), so a block wastes what the buffer's rounding wastes; Data's
// capacity is size exactly, so history.max_bytes counts what it did.
func newPublication(size int) (*Publication, []byte) {
	switch {
	case size <= 32:
		p := new(struct {
			Publication
			b [32]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 64:
		p := new(struct {
			Publication
			b [64]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 96:
		p := new(struct {
			Publication
			b [96]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 128:
		p := new(struct {
			Publication
			b [128]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 160:
		p := new(struct {
			Publication
			b [160]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 192:
		p := new(struct {
			Publication
			b [192]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 224:
		p := new(struct {
			Publication
			b [224]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 288:
		p := new(struct {
			Publication
			b [288]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 352:
		p := new(struct {
			Publication
			b [352]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 416:
		p := new(struct {
			Publication
			b [416]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 544:
		p := new(struct {
			Publication
			b [544]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 672:
		p := new(struct {
			Publication
			b [672]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 800:
		p := new(struct {
			Publication
			b [800]byte
		})
		return &p.Publication, p.b[:0:size]
	case size <= 928:
		p := new(struct {
			Publication
			b [928]byte
		})
		return &p.Publication, p.b[:0:size]
	default:
		return new(Publication), make([]byte, 0, size)
	}
}
