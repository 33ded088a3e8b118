"""The gateway's HTTP server on httptools: connection.py reads and answers one client
connection, server.py accepts them, accept.py is the accept loop both servers share."""
