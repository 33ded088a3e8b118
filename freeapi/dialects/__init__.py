"""Front-door dialects: pure translations between a door's wire format and the OpenAI
chat-completions body the pipeline works on. No Tornado here."""
