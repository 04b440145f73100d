"""Grants (ACL sections) as pg_dump writes them, against the default privileges.
"""


def acl_items(acl, owner):
    """SQL for the items of ``acl`` as [grantee as GRANT names it, privilege, grantable,
    granted by the owner], in pg_dump's order (the aclitems' own)."""
    return '''CASE WHEN %s IS NOT NULL THEN array_to_json(ARRAY(SELECT json_build_array(
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))
                END, a.privilege_type, a.is_grantable, a.grantor = %s)
          FROM aclexplode(%s) WITH ORDINALITY AS a(grantor, grantee, privilege_type,
                                                   is_grantable, n) ORDER BY a.n)) END''' % (
        acl, owner, acl)


# The privileges of each kind of object, in the order pg_dump names them.
PRIVILEGES = {
    'TABLE': ('SELECT', 'INSERT', 'REFERENCES', 'DELETE', 'TRIGGER', 'TRUNCATE', 'MAINTAIN',
              'UPDATE'),
    'SEQUENCE': ('SELECT', 'USAGE', 'UPDATE'),
    'FUNCTION': ('EXECUTE',), 'PROCEDURE': ('EXECUTE',),
}


def default_acl(keyword, quoted_owner, server_version):
    """What :func:`acl_items` would read from acldefault(): the owner holds every
    privilege of the kind (MAINTAIN only from PostgreSQL 17), granted by
    itself, and PUBLIC may run functions and procedures.  Worked out here,
    it costs the statements that read objects no subquery of their own."""
    public = [['PUBLIC', 'EXECUTE', False, True]] if keyword in ('FUNCTION', 'PROCEDURE') else []
    return public + [[quoted_owner, privilege, False, True] for privilege in PRIVILEGES[keyword]
                     if privilege != 'MAINTAIN' or server_version >= 170000]


def _acl(keyword, target, owner, acl, base):
    """The GRANT and REVOKE lines pg_dump writes for ``acl`` (from :func:`acl_items`)
    against the default ``base`` (from :func:`default_acl`); None when it
    would write more: grants made by another role, the owner's own
    privileges changed, or some of a role's privileges grantable and others
    not."""
    def by_grantee(items):
        grouped = {}
        for grantee, privilege, grantable, by_owner in items or ():
            if not by_owner or privilege not in PRIVILEGES[keyword]:
                return None
            grouped.setdefault(grantee, set()).add((privilege, grantable))
        return grouped
    now, default = by_grantee(acl), by_grantee(base)
    if acl is None or now is None or default is None:
        return [] if acl is None and default is not None else None
    full = {privilege for privilege, _ in default.get(owner, ())}
    lines = []
    for grantee, privileges in default.items():
        if now.get(grantee) != privileges:
            if grantee == owner:
                return None
            lines.append('REVOKE ALL ON %s %s FROM %s;' % (keyword, target, grantee))
    for grantee, privileges in now.items():
        if default.get(grantee) == privileges:
            continue
        grantable = {option for _, option in privileges}
        if len(grantable) > 1:
            return None
        names = {privilege for privilege, _ in privileges}
        text = 'ALL' if names == full else ','.join(
            name for name in PRIVILEGES[keyword] if name in names)
        lines.append('GRANT %s ON %s %s TO %s%s;' % (
            text, keyword, target, grantee, ' WITH GRANT OPTION' if grantable == {True} else ''))
    return lines
