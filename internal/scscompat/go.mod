module github.com/sessionkit/sessionkit/internal/scscompat

go 1.25

replace github.com/sessionkit/sessionkit => ../../

require (
	github.com/alexedwards/scs/redisstore v0.0.0-20251002162104-209de6e426de
	github.com/alexedwards/scs/v2 v2.9.0
	github.com/gomodule/redigo v1.9.3
	github.com/sessionkit/sessionkit v0.0.0
)

require (
	github.com/FZambia/sentinel/v2 v2.0.1 // indirect
	github.com/mna/redisc v1.4.0 // indirect
)
