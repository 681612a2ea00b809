// The console's shell: header with the sections and who is signed in, the sign-in
// screens (token, Cognito), and the page of the current route.

import { createContext } from 'preact';
import { useContext, useEffect, useState } from 'preact/hooks';

import { can, describeRoles } from './auth/roles.js';
import { html, ErrorBox } from './ui/common.js';
import { useRoute } from './router.js';
import { FleetPage } from './pages/fleet.js';
import { DevicePage } from './pages/device.js';
import { SendPage } from './pages/send.js';
import { EventsPage } from './pages/events.js';

const Ctx = createContext(null);

/** {api, session, roles, can(method, path)} of the running console. */
export function useConsole() {
  return useContext(Ctx);
}

function TokenSignIn({ session }) {
  const [error, setError] = useState(null);
  const submit = (e) => {
    e.preventDefault();
    try {
      session.setToken(new FormData(e.target).get('token') ?? '');
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card signin" onSubmit=${submit}>
    <h2>Sign in to this hub</h2>
    <p>This hub needs its API token (<code>access.apiToken</code>). It is kept for this browser tab only.</p>
    <input name="token" type="password" autocomplete="off" placeholder="API token" aria-label="API token" />
    <button type="submit">Sign in</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function CognitoSignIn({ session }) {
  const [error, setError] = useState(null);
  return html`<div class="card signin">
    <h2>Sign in</h2>
    <p>Operators sign in with their account of the Mir user pool.</p>
    <button onClick=${() => session.signIn().catch(setError)}>Sign in with Cognito</button>
    <${ErrorBox} error=${error} />
  </div>`;
}

function Page({ route }) {
  const [section, id, sub, item] = route.parts;
  if (!section || section === 'devices') {
    if (id) return html`<${DevicePage} id=${id} tab=${sub ?? 'overview'} item=${item} query=${route.query} />`;
    return html`<${FleetPage} query=${route.query} />`;
  }
  if (section === 'commands') return html`<${SendPage} kind="command" query=${route.query} />`;
  if (section === 'config') return html`<${SendPage} kind="config" query=${route.query} />`;
  if (section === 'events') return html`<${EventsPage} query=${route.query} />`;
  return html`<div class="card"><h2>Not found</h2><p>No page <code>#/${route.parts.join('/')}</code>. <a href="#/">Back to the fleet</a>.</p></div>`;
}

export function App({ api, session }) {
  const [, setTick] = useState(0);
  useEffect(() => session.onChange(() => setTick((t) => t + 1)), [session]);
  const route = useRoute();
  const roles = session.roles;
  const value = { api, session, roles, can: (method, path) => can(roles, method, path) };
  const section = route.parts[0] ?? 'devices';
  const nav = [
    ['devices', 'Fleet'],
    ['commands', 'Commands'],
    ['config', 'Configuration'],
    ['events', 'Events'],
  ];
  return html`<${Ctx.Provider} value=${value}>
    <header class="top">
      <a class="brand" href="#/">Mir console</a>
      <nav>
        ${nav.map(([s, label]) => html`<a href=${`#/${s}`} class=${section === s ? 'active' : ''}>${label}</a>`)}
      </nav>
      <span class="who" data-testid="who">
        ${session.user} · <span data-testid="role">${describeRoles(roles)}</span>
        ${session.kind !== 'none' && session.signedIn ? html` · <button class="link" onClick=${() => session.signOut()}>Sign out</button>` : null}
      </span>
    </header>
    <main>
      ${!session.signedIn
        ? session.kind === 'token'
          ? html`<${TokenSignIn} session=${session} />`
          : html`<${CognitoSignIn} session=${session} />`
        : html`<${Page} route=${route} />`}
    </main>
  <//>`;
}
