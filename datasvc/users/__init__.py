"""The users resource: request and response models, and the HTTP handlers."""
