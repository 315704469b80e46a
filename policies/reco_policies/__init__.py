"""CrossGuard rules for the reco-articles Pulumi program: one pure function per rule.

Every rule has the shape ``rule(resource_type, props) -> list[str]``: the violation messages for one
resource (empty when it complies, and for types the rule does not look at). ``props`` are the
resource's inputs under their Pulumi property names (camelCase), which is what both CrossGuard's
``ResourceValidationArgs.props`` and Pulumi mocks' ``MockResourceArgs.inputs`` hold.
``catalog`` turns the rules into ``ResourceValidationPolicy`` objects.
"""
