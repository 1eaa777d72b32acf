// Generates the node-forge PKCS#7 EnvelopedData test vector committed beside this file.
//
// Usage (from a scratch directory outside the repository):
//   npm install node-forge
//   NODE_PATH=$PWD/node_modules node /path/to/tests/vectors/node_forge/make_vector.js /path/to/tests/vectors/node_forge
//
// Writes: recipient_key.pem, recipient_cert.pem, sender_key.pem, sender_cert.pem, plaintext.json,
// envelope.pem
'use strict';

const fs = require('fs');
const path = require('path');
const forge = require('node-forge');

const outDir = process.argv[2] || '.';

function makeIdentity(commonName) {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(8));
  cert.validity.notBefore = new Date();
  cert.validity.notAfter = new Date();
  cert.validity.notAfter.setFullYear(cert.validity.notBefore.getFullYear() + 10);
  const attrs = [{ name: 'commonName', value: commonName }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { keys, cert };
}

const sender = makeIdentity('org1-external');
const recipient = makeIdentity('org2-external');

// RSA-SHA256, PKCS#1 v1.5, over the UTF-8 bytes of the content.
const content = 'hello from node-forge';
const md = forge.md.sha256.create();
md.update(content, 'utf8');
const signature = Buffer.from(sender.keys.privateKey.sign(md), 'binary');
if (!sender.keys.publicKey.verify(md.digest().bytes(), signature.toString('binary'))) {
  throw new Error('self-check of the signature failed');
}

// JSON.stringify turns the Buffer into {"type":"Buffer","data":[...]}, as the vendor's client does.
const plaintext = JSON.stringify({
  headers: {
    from: 'kld://app2app/m/org1/e/env1/s/svc1/d/org1-external',
    to: 'kld://app2app/m/org2/e/env1/s/svc1/d/org2-external',
    signature: signature,
  },
  content: content,
});

// Default createEnvelopedData options, content cipher AES-256-CBC, key transport RSA PKCS#1 v1.5.
const p7 = forge.pkcs7.createEnvelopedData();
p7.addRecipient(recipient.cert);
p7.content = forge.util.createBuffer(plaintext, 'utf8');
p7.encrypt(undefined, forge.pki.oids['aes256-CBC']);
const envelopePem = forge.pkcs7.messageToPem(p7);

const write = (name, data) => fs.writeFileSync(path.join(outDir, name), data);
write('recipient_key.pem', forge.pki.privateKeyToPem(recipient.keys.privateKey));
write('recipient_cert.pem', forge.pki.certificateToPem(recipient.cert));
write('sender_key.pem', forge.pki.privateKeyToPem(sender.keys.privateKey));
write('sender_cert.pem', forge.pki.certificateToPem(sender.cert));
write('plaintext.json', Buffer.from(plaintext, 'utf8'));
write('envelope.pem', envelopePem);
console.log('node-forge ' + require('node-forge/package.json').version + ' -> ' + outDir);
