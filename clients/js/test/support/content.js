// Test streams made with ffmpeg for the browser test and the benchmarks, once, under
// target/bench-content/. A 60 s VOD with 2 s segments: video 600 and 200 kbit/s (a moving test
// pattern, constant bitrate), audio 96 kbit/s — the ladder of the viewer trials.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import { repoRoot } from './gateway.js';

/** The directory of the ABR test stream (`manifest.mpd` at its root), made if missing. */
export function abrContent() {
  const dir = path.join(repoRoot, 'target/bench-content/abr');
  if (existsSync(path.join(dir, 'manifest.mpd'))) return dir;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('ffmpeg', ['-version'], { stdio: 'ignore' });
  } catch {
    throw new Error('ffmpeg is required to make the ABR test stream (Debian package ffmpeg, installed by .ci/run)');
  }
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25:duration=60',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=60',
    '-map', '0:v', '-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-g', '50', '-keyint_min', '50', '-sc_threshold', '0',
    '-b:v:0', '600k', '-maxrate:v:0', '600k', '-bufsize:v:0', '300k',
    '-b:v:1', '200k', '-maxrate:v:1', '200k', '-bufsize:v:1', '100k', '-s:v:1', '320x180',
    '-c:a', 'aac', '-b:a', '96k',
    '-f', 'dash', '-seg_duration', '2', '-use_template', '1', '-use_timeline', '0',
    '-init_seg_name', 'init-$RepresentationID$.m4s', '-media_seg_name', 'chunk-$RepresentationID$-$Number%05d$.m4s',
    '-adaptation_sets', 'id=0,streams=v id=1,streams=a',
    path.join(dir, 'manifest.mpd'),
  ], { stdio: 'inherit' });
  return dir;
}
