// Signing in with an OpenID Connect provider, in a real browser: `apna serve`
// configured like the AWS deployment's UI (APNA_OIDC_ISSUER/CLIENT_ID) with
// the loopback provider of mock_oidc.mjs. tests/live.sh starts both and sets
// APNA_OIDC_E2E_URL (the UI) and APNA_OIDC_PROVIDER_URL.
//
// No token is pasted: the page sends the browser to the provider, comes back
// with a code, exchanges it with its PKCE verifier, and calls the API with the
// ID token; a reload renews an expiring token with the refresh token; a
// forged answer is refused; signing out forgets the tokens.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, newPage, outDir, assertNoErrorToasts } from './flow.mjs';

const url = process.env.APNA_OIDC_E2E_URL;
const provider = process.env.APNA_OIDC_PROVIDER_URL;
const required = process.env.APNA_REQUIRE_SERVICES === '1';

const stats = async () => (await fetch(`${provider}/stats`)).json();

if (!url || !provider) {
  if (required) {
    test('OIDC sign-in e2e', () => assert.fail('APNA_OIDC_E2E_URL / APNA_OIDC_PROVIDER_URL are not set but APNA_REQUIRE_SERVICES=1'));
  } else {
    console.log('skipped: APNA_OIDC_E2E_URL is not set (tests/live.sh starts apna serve with a mock OIDC provider)');
  }
} else {
  test('the UI signs in with the authorization-code flow and PKCE', { timeout: 5 * 60_000 }, async (t) => {
    const browser = await launch();
    t.after(() => browser.close());
    const errors = [];
    // The forged answer below is refused with a message, not a console error;
    // 401s before sign-in are expected network noise.
    const { page } = await newPage(browser, { width: 1280, height: 800 }, errors, {
      allow: [/401/],
    });
    page.setDefaultTimeout(30_000);

    // Signed out: only the way in is shown, and no API call was made with a token.
    await page.goto(url);
    await page.getByRole('heading', { name: 'Sign in to build apps' }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('apna.token')), null);
    await page.screenshot({ path: `${outDir}/oidc-signed-out.png` });

    // Sign in: provider and back, the code exchanged with the verifier.
    const before = await stats();
    await page.locator('#sign-in-main').click();
    await page.getByRole('heading', { name: 'What do you want to build?' }).waitFor();
    assert.ok(!page.url().includes('code='), `the code is removed from the address: ${page.url()}`);
    const after = await stats();
    assert.equal(after.authorize, before.authorize + 1);
    assert.equal(after.code_exchanges, before.code_exchanges + 1, 'one code exchanged with a matching PKCE verifier');
    assert.equal(after.pkce_failures, before.pkce_failures);
    await page.locator('#sign-out').waitFor();

    // The API knows the person from the ID token.
    const token = await page.evaluate(() => localStorage.getItem('apna.token'));
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    assert.equal(claims.sub, 'oidc-person');
    const created = await page.evaluate(async (t) => {
      const r = await fetch('/api/projects', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` },
        body: JSON.stringify({ prompt: 'a tiny counter' }),
      });
      return { status: r.status, body: await r.json() };
    }, token);
    assert.equal(created.status, 202, JSON.stringify(created.body));
    assert.equal(created.body.project.owner, 'oidc-person');
    await page.reload();
    // The list is fetched with the ID token: the new project is in it.
    await page.locator('.project-list', { hasText: /tiny counter/i }).waitFor();
    await assertNoErrorToasts(page);
    await page.screenshot({ path: `${outDir}/oidc-signed-in.png` });

    // A token about to expire is renewed with the refresh token on load.
    await page.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('apna.oidc.session'));
      s.exp = Math.floor(Date.now() / 1000) + 10;
      localStorage.setItem('apna.oidc.session', JSON.stringify(s));
    });
    const refreshesBefore = (await stats()).refreshes;
    await page.reload();
    await page.getByRole('heading', { name: 'What do you want to build?' }).waitFor();
    assert.equal((await stats()).refreshes, refreshesBefore + 1, 'renewed once');
    assert.notEqual(await page.evaluate(() => localStorage.getItem('apna.token')), token);

    // Signing out forgets the tokens.
    await page.locator('#sign-out').click();
    await page.getByRole('heading', { name: 'Sign in to build apps' }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('apna.token')), null);
    assert.equal(await page.evaluate(() => localStorage.getItem('apna.oidc.session')), null);

    // An answer this tab did not ask for (wrong state) is refused, nothing exchanged.
    const exchanges = (await stats()).code_exchanges;
    await page.goto(`${url.replace(/\/$/, '')}/?code=stolen&state=forged#/`);
    await page.locator('.toast-error', { hasText: /did not match this tab/ }).waitFor();
    assert.equal((await stats()).code_exchanges, exchanges);
    assert.equal(await page.evaluate(() => localStorage.getItem('apna.token')), null);
    assert.ok(!page.url().includes('code='));

    assert.deepEqual(errors, [], 'browser console errors');
  });
}
