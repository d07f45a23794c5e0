"""The federation runtime under /affwebservices/ (paths from federation.runtime_paths).

Runtime views are exempt from console CSRF (SAML messages are protected by signatures and
InResponseTo) and from the auditor rule; they never require a console login.
"""

urlpatterns = []
