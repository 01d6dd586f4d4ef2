#!/usr/bin/env bash
# Provisions the test Active Directory domain (Samba 4.17) into DIR/pristine (never
# started), for `rebond-testkit::directory::Samba` to copy and start per test.
# usage: provision.sh DIR IP
# Domain TEST / test.lan, base DC=test,DC=lan; users, groups and computers from
# fixtures.py (password Passw0rd!); TLS from our own CA (DIR/tls/ca.pem).
set -euo pipefail
DIR=${1:?usage: provision.sh DIR IP}
IP=${2:?usage: provision.sh DIR IP}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIVE=$DIR/live
PW='Passw0rd!'
mkdir -p "$DIR"
rm -rf "$LIVE" "$DIR/pristine"

# Our CA and the DC's leaf (IP and DNS SANs, CA:FALSE: rustls needs both).
mkdir -p "$DIR/tls"
(
  cd "$DIR/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -subj "/CN=Rebond Test AD CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout dc.key -out dc.csr -subj "/CN=dc1.test.lan" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:dc1.test.lan,DNS:test.lan,IP:$IP" > leaf.ext
  openssl x509 -req -in dc.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out dc.pem -days 3650 -extfile leaf.ext 2>/dev/null
  chmod 600 ca.key dc.key # samba refuses a key readable by others
  rm -f dc.csr ca.srl
)

samba-tool domain provision --targetdir="$LIVE" --realm=TEST.LAN --domain=TEST \
  --server-role=dc --dns-backend=NONE --use-rfc2307 --host-name=dc1 --host-ip="$IP" \
  --adminpass='Adm1n-Passw0rd!' \
  --option="interfaces=$IP/8" --option="bind interfaces only=yes" >"$DIR/provision.log" 2>&1
mkdir -p "$LIVE/log" "$LIVE/run" "$LIVE/cache"

# Everything under the folder; only LDAP and the KDC; our TLS; no shares but sysvol/netlogon.
/usr/bin/python3 - "$LIVE/etc/smb.conf" "$LIVE" "$DIR" <<'PY'
import re, sys
conf, L, D = sys.argv[1:]
txt = open(conf).read()
glob, rest = re.match(r'(?s)(.*?\[global\]\n.*?)(\n\[.*)', txt).groups()
over = {
    'log file': f'{L}/log/log.%m', 'logging': 'file', 'log level': '1 auth_audit:3',
    'pid directory': f'{L}/run', 'ncalrpc dir': f'{L}/run/ncalrpc',
    'winbindd socket directory': f'{L}/run/winbindd',
    'ntp signd socket directory': f'{L}/run/ntp_signd',
    'server services': 'ldap, kdc',
    'tls enabled': 'yes', 'tls keyfile': f'{D}/tls/dc.key',
    'tls certfile': f'{D}/tls/dc.pem', 'tls cafile': f'{D}/tls/ca.pem',
}
keep = [l for l in glob.split('\n') if not any(re.match(r'\s*' + re.escape(k) + r'\s*=', l) for k in over)]
keep += ['\t%s = %s' % kv for kv in over.items()]
shares = [s.strip('\n') for s in re.split(r'\n(?=\[)', rest.strip('\n')) if s.startswith('[sysvol]') or s.startswith('[netlogon]')]
open(conf, 'w').write('\n'.join(keep) + '\n\n' + '\n\n'.join(shares) + '\n')
PY

/usr/bin/python3 "$HERE/fixtures.py" "$LIVE" "$PW" >"$DIR/fixtures.log" 2>&1
# erin: a 60-day-old password (> maxPwdAge 42 d): "password expired". pwdLastSet only
# takes 0 or -1, so her password is set with the clock moved back.
faketime -f -60d samba-tool user setpassword erin --newpassword="$PW" \
  -H "$LIVE/private/sam.ldb" -s "$LIVE/etc/smb.conf" >>"$DIR/fixtures.log" 2>&1

# smb.conf names DIR/live: each start replaces DIR/live with a fresh copy of pristine
# (so lockouts and bad-password counts start from zero).
cp -a "$LIVE" "$DIR/pristine"
touch "$DIR/pristine/.complete"
