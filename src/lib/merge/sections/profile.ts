import type { ProfilePayload } from '../../contract/payloads.js'
import type { ProfileSection } from '../../contract/sections.js'
import type { SectionBuilder } from '../../contract/upstreams.js'

/** The profile section is the payload as validated. */
const profile: SectionBuilder<ProfilePayload, ProfileSection> = { build: (payload) => payload }
export default profile
