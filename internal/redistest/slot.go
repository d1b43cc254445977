package redistest

import "strings"

// Slot returns the Redis Cluster hash slot of key, 0 to 16383, as CLUSTER
// KEYSLOT computes it: CRC16 (XMODEM) of the key modulo 16384, or of its
// hash tag if it has one. The hash tag is what lies between the first "{"
// and the first "}" after it, if that is not empty; so "{user1}.a" and
// "{user1}.b" share a slot, while "{}{user1}" hashes as a whole.
func Slot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return int(crc16(key) % slotCount)
}

// crc16 returns the CRC16 of s with the XMODEM parameters Redis uses:
// polynomial 0x1021, initial value 0, no reflection.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
