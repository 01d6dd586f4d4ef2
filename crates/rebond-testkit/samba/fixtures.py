#!/usr/bin/python3
"""Create the Rebond directory fixtures in a provisioned, NOT running, Samba AD.

usage: python3 fixtures.py DIR [PASSWORD]
Opens DIR/private/sam.ldb directly (offline, one process: ~1 s for everything)
with Samba's own Python bindings, i.e. the same code path as
`samba-tool ... -H DIR/private/sam.ldb`, without paying ~0.3-0.7 s per call.
"""
import sys
import time
import ldb
import samba
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

D = sys.argv[1]
PW = sys.argv[2] if len(sys.argv) > 2 else "Passw0rd!"

lp = LoadParm()
lp.load(f"{D}/etc/smb.conf")
db = SamDB(url=f"{D}/private/sam.ldb", session_info=system_session(), lp=lp)
base = str(db.domain_dn())                     # DC=test,DC=lan
realm = lp.get("realm").lower()                # test.lan
M = ldb.Message
E = ldb.MessageElement
REPLACE = ldb.FLAG_MOD_REPLACE
ADD = ldb.FLAG_MOD_ADD


def udn(sam):
    return f"CN={sam},CN=Users,{base}"


def modify(dn, controls=None, **attrs):
    m = M(ldb.Dn(db, dn))
    for k, v in attrs.items():
        m[k] = E(v, REPLACE, k)
    db.modify(m, controls=controls or [])


def exists(dn):
    try:
        return len(db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["dn"])) == 1
    except ldb.LdbError:
        return False


# ---- domain policy (same as `samba-tool domain passwordsettings set`) ------
# lockout: threshold 5, duration 10 min, observation window 10 min (negative
# 100 ns intervals); no complexity, no history, min age 0. maxPwdAge stays at
# the default 42 days (erin relies on it).
TEN_MIN = str(-10 * 60 * 10**7)
modify(base, lockoutThreshold="5", lockoutDuration=TEN_MIN,
       lockOutObservationWindow=TEN_MIN, pwdProperties="0",
       pwdHistoryLength="0", minPwdAge="0")

# ---- users (CN = sAMAccountName, UPN = sam@test.lan) -----------------------
users = ["svc-rebond", "alice", "bob", "carol", "dave", "erin", "frank",
         "grace", "heidi", "ivan"]
for u in users:
    if not exists(udn(u)):
        db.newuser(u, PW, useusernameascn=True, givenname=u.capitalize(),
                   surname="Test", mailaddress=f"{u}@{realm}")

# Passwords of everyone but erin/frank never expire (UF_DONT_EXPIRE_PASSWD), so a
# pristine copy kept longer than maxPwdAge (42 days) still behaves the same.
# (frank must not have it: with it, pwdLastSet=0 no longer forces a change.)
UF_DONT_EXPIRE_PASSWD = 0x10000
for u in users + ["Administrator"]:
    if u in ("erin", "frank"):
        continue
    r = db.search(base=udn(u), scope=ldb.SCOPE_BASE, attrs=["userAccountControl"])
    uac = int(r[0]["userAccountControl"][0]) | UF_DONT_EXPIRE_PASSWD
    modify(udn(u), userAccountControl=str(uac))

# carol: disabled                                  -> data 533
db.disable_account(f"(sAMAccountName=carol)")
# dave: accountExpires = 2020-01-01 (in the past)  -> data 701
modify(udn("dave"), accountExpires=str(samba.unix2nttime(1577836800)))
# erin: password expired                          -> data 532
#   Done by fixture.sh AFTER this script: her password is (re)set by
#   `faketime -f -60d samba-tool user setpassword erin ...`, so pwdLastSet is
#   60 days old and the default maxPwdAge (42 days) has passed.
#   Not possible here: pwdLastSet only accepts 0 / -1, even offline with the
#   relax control ("setup_last_set_field: pwdLastSet must be 0 or -1 only!"),
#   and a PSO can't help on its own: Samba treats any max password age of
#   1 day or less as "never expires" (msDS-UserPasswordExpiryTimeComputed
#   stays 0x7FFFFFFFFFFFFFFF).
# frank: must change password at next logon (pwdLastSet=0) -> data 773
modify(udn("frank"), pwdLastSet="0")
# grace: may only log on from OTHERPC              -> data 531 (if Samba checks)
modify(udn("grace"), userWorkstations="OTHERPC")
# heidi: logonHours all zero (21 bytes = 168 h)    -> data 530
modify(udn("heidi"), logonHours=b"\x00" * 21)

# ---- groups: Rebond Users > Call Centre > Call Centre Night > alice --------
for g in ["Rebond Users", "Call Centre", "Call Centre Night",
          "Rebond Audio", "Rebond Admins"]:
    if not exists(udn(g)):
        db.newgroup(g)


def add_members(group, member_dns):
    cur = db.search(base=udn(group), scope=ldb.SCOPE_BASE, attrs=["member"])
    have = {str(x) for x in cur[0].get("member", [])}
    new = [d for d in member_dns if d not in have]
    if new:
        m = M(ldb.Dn(db, udn(group)))
        m["member"] = E(new, ADD, "member")
        db.modify(m)


add_members("Rebond Users", [udn("Call Centre"), udn("bob")])
add_members("Call Centre", [udn("Call Centre Night")])
add_members("Call Centre Night", [udn("alice")])
add_members("Rebond Audio", [udn("alice")])
add_members("Rebond Admins", [udn("bob")])
# everyone who is allowed in at all is in Rebond Users (state accounts too,
# so a test sees the state refusal and not a "not in group" refusal)
add_members("Rebond Users", [udn(u) for u in
                             ["carol", "dave", "erin", "frank", "grace",
                              "heidi", "ivan"]])

# ---- computers + msTSPrimaryDesktop ----------------------------------------
for c, owner in [("ws-alice", "alice"), ("ws-bob", "bob")]:
    cdn = f"CN={c},CN=Computers,{base}"
    if not exists(cdn):
        db.newcomputer(c)
    modify(cdn, dNSHostName=f"{c}.{realm}")
    modify(udn(owner), msTSPrimaryDesktop=cdn)

print("fixtures created in", base)
