package transport

import "sync"

// frameBuffers recycles the buffers batches are built in; a buffer that grew
// past maxPooled is dropped so that one huge batch does not pin memory.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooled = 1 << 20

func getBuffer() *[]byte { return frameBuffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	frameBuffers.Put(b)
}
