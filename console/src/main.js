// Start: read ./config.json, open the session (finishing a Cognito redirect), mount the app.

import { render } from 'preact';

import 'uplot/dist/uPlot.min.css';
import './style.css';

import { loadConfig } from './config.js';
import { Session } from './auth/session.js';
import { Api } from './api.js';
import { App } from './app.js';
import { html } from './ui/common.js';

async function start() {
  const root = document.getElementById('app');
  try {
    const config = await loadConfig(fetch, window.location.origin + window.location.pathname);
    const session = new Session(config, window.sessionStorage);
    await session.init();
    const api = new Api(config.api, session);
    render(html`<${App} api=${api} session=${session} />`, root);
  } catch (e) {
    render(html`<main><div class="error" role="alert">The console cannot start: ${e.message}</div></main>`, root);
  }
}

start();
