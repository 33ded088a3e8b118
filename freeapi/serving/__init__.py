"""The gateway's HTTP server on httptools: reading.py parses what a client sends,
connection.py runs and answers its requests one at a time, framing.py decides how an answer
is framed, server.py accepts connections (accept.py: the accept loop both servers share)."""
