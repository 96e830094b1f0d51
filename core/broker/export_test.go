package broker

// SetAfterLookup lets tests run f in Publish between finding a channel and
// locking it.
func (m *Memory) SetAfterLookup(f func()) { m.afterLookup = f }
