"""The api projector: the services' events -> each application's status, progress, history."""
