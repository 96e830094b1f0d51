package state

import (
	"fmt"
	"time"
)

// MinTTL is the shortest TTL a write may ask for: JetStream counts message
// TTLs in whole seconds, and both backends keep one rule (sdk.WithTTL says
// "at least one second").
const MinTTL = time.Second

// ValidTTL checks a write's TTL: 0 (none) or at least MinTTL.
func ValidTTL(ttl time.Duration) error {
	if ttl < 0 || (ttl > 0 && ttl < MinTTL) {
		return fmt.Errorf("state ttl %v: must be 0 (none) or at least %v", ttl, MinTTL)
	}
	return nil
}
