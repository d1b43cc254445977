module github.com/sessionkit/sessionkit

go 1.25

require (
	github.com/FZambia/sentinel/v2 v2.0.1
	github.com/alexedwards/scs/v2 v2.9.0
	github.com/gomodule/redigo v1.9.3
	github.com/gorilla/securecookie v1.1.2
	github.com/mna/redisc v1.4.0
)
