// Package scscompat holds the tests of sessionkit's migration from scs
// (session.Config.FromSCS, redisstore.Store.SCSRecords) against records
// that real scs and scs/redisstore code writes.
//
// It is a module of its own so that scs/redisstore, which only these tests
// need, stays out of the go.mod that users of sessionkit import.
package scscompat
