"""The extension handler: speaks the guest-agent protocol and composes the capabilities."""
