//! Every sentence a person reads, in English and French. The page fetches the
//! whole catalog (`/i18n.json`); the CLI uses the same sentences.

use crate::ErrorCode;

/// The languages Rebond speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// Picks the first supported language of an `Accept-Language` header or a
    /// `navigator.language` value; English otherwise.
    pub fn negotiate(accept: &str) -> Lang {
        for part in accept.split(',') {
            let tag = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            let primary = tag.split('-').next().unwrap_or("");
            match primary {
                "fr" => return Lang::Fr,
                "en" => return Lang::En,
                _ => {}
            }
        }
        Lang::En
    }
}

/// A sentence in both languages.
pub struct Text {
    pub en: &'static str,
    pub fr: &'static str,
}

impl Text {
    pub fn get(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Fr => self.fr,
        }
    }
}

macro_rules! texts {
    ($($key:literal => $en:literal, $fr:literal;)*) => {
        /// Keys of the user-interface texts, in catalog order.
        pub const CATALOG_KEYS: &[(&str, Text)] = &[$(($key, Text { en: $en, fr: $fr })),*];
    };
}

texts! {
    "title" => "Rebond — your workstation", "Rebond — votre poste de travail";
    "sign_in_heading" => "Sign in to reach your workstation", "Connectez-vous pour retrouver votre poste de travail";
    "user_label" => "User name", "Nom d'utilisateur";
    "password_label" => "Password", "Mot de passe";
    "sign_in_button" => "Sign in", "Se connecter";
    "signing_in" => "Checking your sign-in…", "Vérification de votre identité…";
    "stage_1" => "Connecting to your workstation…", "Connexion à votre poste de travail…";
    "stage_2" => "Securing the connection to your workstation…", "Sécurisation de la connexion à votre poste…";
    "stage_3" => "Opening your session on the workstation…", "Ouverture de votre session sur le poste…";
    "stage_4" => "Your desktop is on its way…", "Votre bureau arrive…";
    "code_label" => "Code from your authenticator app", "Code de votre application d'authentification";
    "code_button" => "Continue", "Continuer";
    "enrol_heading" => "Set up your second factor: scan this code with an authenticator app (or type the key below), then type the 6-digit code it shows.", "Configurez votre second facteur : scannez ce code avec une application d'authentification (ou saisissez la clé ci-dessous), puis tapez le code à 6 chiffres qu'elle affiche.";
    "stage_5" => "Waking your workstation… This can take a minute.", "Réveil de votre poste de travail… Cela peut prendre une minute.";
    "reconnecting" => "Connection lost; reconnecting to the same session…", "Connexion perdue ; reconnexion à la même session…";
    "sign_in_again" => "Sign in again", "Se reconnecter";
    "sign_out" => "Sign out", "Se déconnecter";
    "pixels_only" => "Only the picture of your desktop reaches this computer; nothing can be copied to or from it.", "Seule l'image de votre bureau arrive sur cet ordinateur ; rien ne peut y être copié, ni en sortir.";
    "error_code" => "Error code", "Code d'erreur";
    "draining" => "This gateway is closing for maintenance in {seconds} s. Save your work; if you are cut off, sign in again and you will find your desktop as you left it.", "Cette passerelle ferme pour maintenance dans {seconds} s. Enregistrez votre travail ; si vous êtes coupé, reconnectez-vous : vous retrouverez votre bureau tel que vous l'avez laissé.";
    "idle_warning" => "You will be disconnected in {seconds} s for inactivity; move the mouse to stay.", "Vous serez déconnecté dans {seconds} s faute d'activité ; bougez la souris pour rester.";
    "injected_slowed" => "Keystrokes are arriving faster than a person types (pasted or injected text): they are slowed to a person's pace, and this is recorded.", "Des frappes arrivent plus vite qu'une personne ne tape (texte collé ou injecté) : elles sont ralenties au rythme d'une personne, et c'est enregistré.";
    "injected_recorded" => "Keystrokes are arriving faster than a person types (pasted or injected text): this is recorded.", "Des frappes arrivent plus vite qu'une personne ne tape (texte collé ou injecté) : c'est enregistré.";
    "speaker_mute" => "Mute your workstation's sound", "Couper le son de votre poste";
    "speaker_unmute" => "Play your workstation's sound", "Remettre le son de votre poste";
    "microphone_start" => "Switch your microphone on (your browser will ask)", "Activer votre micro (votre navigateur vous le demandera)";
    "microphone_mute" => "Mute your microphone", "Couper votre micro";
    "microphone_unmute" => "Unmute your microphone", "Réactiver votre micro";
    "microphone_denied" => "Your browser did not allow the microphone. Allow it (the icon in the address bar), then click the microphone again.", "Votre navigateur n'a pas autorisé le micro. Autorisez-le (l'icône dans la barre d'adresse), puis cliquez à nouveau sur le micro.";
    "sound_unsupported" => "This browser cannot carry your workstation's sound. Use a recent Chrome, Edge or Firefox.", "Ce navigateur ne sait pas transmettre le son de votre poste. Utilisez un Chrome, Edge ou Firefox récent.";
    "network_error" => "The gateway cannot be reached. Check your Internet connection and try again.", "La passerelle est injoignable. Vérifiez votre connexion Internet et réessayez.";
}

pub(crate) fn error_sentence(code: ErrorCode, lang: Lang) -> &'static str {
    let t = match code {
        ErrorCode::BadCredentials => Text {
            en: "Wrong user name or password.",
            fr: "Nom d'utilisateur ou mot de passe incorrect.",
        },
        ErrorCode::WorkstationUnreachable => Text {
            en: "Your workstation does not answer: it may be switched off or disconnected from the network.",
            fr: "Votre poste de travail ne répond pas : il est peut-être éteint ou débranché du réseau.",
        },
        ErrorCode::WorkstationRefusedCredentials => Text {
            en: "Your workstation refused your user name and password.",
            fr: "Votre poste de travail a refusé votre nom d'utilisateur et votre mot de passe.",
        },
        ErrorCode::SessionTakenOver => Text {
            en: "Your session was taken over by another sign-in.",
            fr: "Votre session a été reprise par une autre connexion.",
        },
        ErrorCode::SessionEndedAtWorkstation => Text {
            en: "Your session was ended on the workstation.",
            fr: "Votre session a été fermée sur le poste de travail.",
        },
        ErrorCode::GatewayAtCapacity => Text {
            en: "The gateway is at capacity. Please try again in a few minutes.",
            fr: "La passerelle est saturée. Réessayez dans quelques minutes.",
        },
        ErrorCode::NoWorkstation => Text {
            en: "No workstation is assigned to your account. Contact your IT department.",
            fr: "Aucun poste de travail n'est attribué à votre compte. Contactez votre service informatique.",
        },
        ErrorCode::WorkstationCertificateUntrusted => Text {
            en: "Your workstation's identity could not be verified, so the connection was stopped. Contact your IT department.",
            fr: "L'identité de votre poste de travail n'a pas pu être vérifiée : la connexion a été arrêtée. Contactez votre service informatique.",
        },
        ErrorCode::ForbiddenMessage => Text {
            en: "Your browser sent something the gateway does not allow; the session was closed.",
            fr: "Votre navigateur a envoyé quelque chose que la passerelle n'autorise pas ; la session a été fermée.",
        },
        ErrorCode::SessionExpired => Text {
            en: "Your session has expired. Please sign in again.",
            fr: "Votre session a expiré. Veuillez vous reconnecter.",
        },
        ErrorCode::WorkerFailed => Text {
            en: "The gateway lost your session because of an internal error. Please sign in again.",
            fr: "La passerelle a perdu votre session à la suite d'une erreur interne. Veuillez vous reconnecter.",
        },
        ErrorCode::WorkstationProtocolError => Text {
            en: "Your workstation answered in a way the gateway does not understand. Contact your IT department.",
            fr: "Votre poste de travail a répondu d'une manière que la passerelle ne comprend pas. Contactez votre service informatique.",
        },
        ErrorCode::GatewayShuttingDown => Text {
            en: "The gateway is restarting. Please sign in again in a moment.",
            fr: "La passerelle redémarre. Reconnectez-vous dans un instant.",
        },
        ErrorCode::BadRequest => Text {
            en: "The request was not understood. Reload the page and try again.",
            fr: "La requête n'a pas été comprise. Rechargez la page et réessayez.",
        },
        ErrorCode::Idle => Text {
            en: "You were disconnected after a while without activity. Your session is still open on your workstation: sign in again to continue.",
            fr: "Vous avez été déconnecté après un moment sans activité. Votre session reste ouverte sur votre poste : reconnectez-vous pour continuer.",
        },
        ErrorCode::InjectedTyping => Text {
            en: "Your session was closed: keystrokes arrived far faster than a person types (pasted or injected text).",
            fr: "Votre session a été fermée : des frappes sont arrivées bien plus vite qu'une personne ne tape (texte collé ou injecté).",
        },
        ErrorCode::SignInUnavailable => Text {
            en: "The sign-in service is not available right now. Please try again in a few minutes.",
            fr: "Le service de connexion n'est pas disponible pour le moment. Réessayez dans quelques minutes.",
        },
        ErrorCode::SessionOpenElsewhere => Text {
            en: "Your desktop is open in another window. Use that window, or sign in here to move the desktop to this one.",
            fr: "Votre bureau est ouvert dans une autre fenêtre. Utilisez cette fenêtre, ou reconnectez-vous ici pour y déplacer le bureau.",
        },
        ErrorCode::AccountDisabled => Text {
            en: "Your account is disabled. Contact your IT support.",
            fr: "Votre compte est désactivé. Contactez votre support informatique.",
        },
        ErrorCode::AccountExpired => Text {
            en: "Your account has expired. Contact your IT support.",
            fr: "Votre compte a expiré. Contactez votre support informatique.",
        },
        ErrorCode::AccountLocked => Text {
            en: "Your account is locked after too many wrong passwords. Wait for it to unlock, or contact your IT support.",
            fr: "Votre compte est verrouillé après trop de mots de passe erronés. Attendez son déverrouillage, ou contactez votre support informatique.",
        },
        ErrorCode::PasswordExpired => Text {
            en: "Your password has expired. Change it from an office computer, or ask your IT support, then sign in again.",
            fr: "Votre mot de passe a expiré. Changez-le depuis un ordinateur du bureau, ou demandez à votre support informatique, puis reconnectez-vous.",
        },
        ErrorCode::PasswordMustChange => Text {
            en: "You must change your password before you can sign in. Change it from an office computer, or ask your IT support.",
            fr: "Vous devez changer votre mot de passe avant de vous connecter. Changez-le depuis un ordinateur du bureau, ou demandez à votre support informatique.",
        },
        ErrorCode::NotFromThisComputer => Text {
            en: "Your account may not sign in through this gateway (it is limited to certain computers). Contact your IT support.",
            fr: "Votre compte ne peut pas se connecter par cette passerelle (il est limité à certains ordinateurs). Contactez votre support informatique.",
        },
        ErrorCode::OutsideLogonHours => Text {
            en: "Your account may not sign in at this time of day. Try again during your allowed hours.",
            fr: "Votre compte ne peut pas se connecter à cette heure-ci. Réessayez pendant vos horaires autorisés.",
        },
        ErrorCode::NotInAllowedGroup => Text {
            en: "Your account is not allowed to use remote access. Ask your IT support to add you to the right group.",
            fr: "Votre compte n'est pas autorisé à utiliser l'accès à distance. Demandez à votre support informatique de vous ajouter au bon groupe.",
        },
        ErrorCode::TooManyAttempts => Text {
            en: "Too many sign-in attempts. Wait {minutes} minutes before trying again.",
            fr: "Trop de tentatives de connexion. Attendez {minutes} minutes avant de réessayer.",
        },
        ErrorCode::PasswordMissing => Text {
            en: "Type your password.",
            fr: "Saisissez votre mot de passe.",
        },
        ErrorCode::WorkstationNotYours => Text {
            en: "You can only reach your own workstation. This attempt was recorded.",
            fr: "Vous ne pouvez joindre que votre propre poste de travail. Cette tentative a été enregistrée.",
        },
        ErrorCode::WorkstationDidNotWake => Text {
            en: "Your workstation did not wake up. It may be switched off at the plug; ask someone at the office to switch it on, or contact your IT support.",
            fr: "Votre poste de travail ne s'est pas réveillé. Il est peut-être éteint à la prise : demandez à quelqu'un au bureau de l'allumer, ou contactez votre support informatique.",
        },
        ErrorCode::SecondFactorRequired => Text {
            en: "Type the 6-digit code from your authenticator app.",
            fr: "Saisissez le code à 6 chiffres de votre application d'authentification.",
        },
        ErrorCode::SecondFactorWrong => Text {
            en: "That code is wrong or was already used. Type the current code from your authenticator app.",
            fr: "Ce code est faux ou a déjà servi. Saisissez le code actuel de votre application d'authentification.",
        },
        ErrorCode::ChooseWorkstation => Text {
            en: "Choose the workstation to connect to.",
            fr: "Choisissez le poste de travail auquel vous connecter.",
        },
        ErrorCode::SignedOut => Text {
            en: "You are signed out.",
            fr: "Vous êtes déconnecté.",
        },
    };
    t.get(lang)
}
